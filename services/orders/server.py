"""Wiring of the orders service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async
from shop.lib.runtime import remote_token_verifier
from shop.lib.server import ServiceDefinition, ShopServer
from shop.orders.v1 import orders_pb2, orders_pb2_grpc

from services.orders.config import OrdersSettings
from services.orders.servicer import OrdersServicer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: OrdersSettings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.clients = ServiceClients(settings, "orders")


def build_server(settings: OrdersSettings | None = None) -> ShopServer:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings)
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)

    async def migrate() -> None:
        if settings.run_migrations:
            await upgrade_async(MIGRATIONS_DIR, settings.database_url)

    definition = ServiceDefinition(
        name="orders",
        servicers=[(orders_pb2_grpc.add_OrdersServiceServicer_to_server, OrdersServicer(runtime), SERVICE_NAME)],
        verifier=verifier,
        on_start=[migrate],
        on_stop=[runtime.clients.close, runtime.db.dispose],
        background=[poll_revocations],
    )
    return ShopServer(definition, settings)
