"""Wiring of the cart service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async
from shop.lib.runtime import remote_token_verifier
from shop.lib.server import ServiceDefinition, ShopServer

from services.cart.config import CartSettings
from services.cart.servicer import CartServicer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = cart_pb2.DESCRIPTOR.services_by_name["CartService"].full_name


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: CartSettings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.clients = ServiceClients(settings, "cart")


def build_server(settings: CartSettings | None = None) -> ShopServer:
    settings = settings or CartSettings()
    runtime = Runtime(settings)
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)

    async def migrate() -> None:
        if settings.run_migrations:
            await upgrade_async(MIGRATIONS_DIR, settings.database_url)

    definition = ServiceDefinition(
        name="cart",
        servicers=[(cart_pb2_grpc.add_CartServiceServicer_to_server, CartServicer(runtime), SERVICE_NAME)],
        verifier=verifier,
        on_start=[migrate],
        on_stop=[runtime.clients.close, runtime.db.dispose],
        background=[poll_revocations],
    )
    return ShopServer(definition, settings)
