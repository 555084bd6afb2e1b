"""Wiring of the catalog service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async
from shop.lib.runtime import remote_token_verifier
from shop.lib.server import ServiceDefinition, ShopServer

from services.catalog.config import CatalogSettings
from services.catalog.servicer import CatalogServicer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.clients = ServiceClients(settings, "catalog")


def build_server(settings: CatalogSettings | None = None) -> ShopServer:
    settings = settings or CatalogSettings()
    runtime = Runtime(settings)
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)

    async def migrate() -> None:
        if settings.run_migrations:
            await upgrade_async(MIGRATIONS_DIR, settings.database_url)

    definition = ServiceDefinition(
        name="catalog",
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogServicer(runtime), SERVICE_NAME)],
        verifier=verifier,
        on_start=[migrate],
        on_stop=[runtime.clients.close, runtime.db.dispose],
        background=[poll_revocations],
    )
    return ShopServer(definition, settings)
