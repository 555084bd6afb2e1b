"""Wiring of the catalog service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

import structlog

from services.catalog.config import CatalogSettings
from services.catalog.products import Products
from services.catalog.reviews import Reviews
from services.catalog.seed import seed_demo_data
from services.catalog.servicer import CatalogServicer
from services.catalog.stock import Stock
from services.catalog.wishlist import Wishlist
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.pagination import PageTokens
from shop.lib.periodic import Periodic
from shop.lib.runtime import token_checking_server
from shop.lib.server import ShopServer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name

log = structlog.get_logger("catalog.server")


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "catalog")
        tokens = PageTokens(settings.page_token_secret)
        # The use cases, one per concern (each write owns its transaction).
        self.products = Products(self.db, tokens)
        self.stock = Stock(self.db)
        self.reviews = Reviews(self.db, tokens)
        self.wishlist = Wishlist(self.db)
        # Sweep passes completed (tests and operators can see the loop runs).
        self.sweeps = 0


async def sweep_once(runtime: Runtime) -> int:
    """Releases reservations left uncommitted past their TTL; returns how many."""
    released = await runtime.stock.release_expired()
    runtime.sweeps += 1
    if released:
        log.info("reservations.released_expired", count=released)
    return released


async def sweep_forever(runtime: Runtime) -> None:
    await Periodic("reservations.sweep", lambda: sweep_once(runtime), lambda: runtime.settings.sweep_interval_seconds)()


def build_server(settings: CatalogSettings | None = None) -> ShopServer:
    settings = settings or CatalogSettings()
    runtime = Runtime(settings)

    async def seed() -> None:
        if settings.seed_demo_data:
            created = await seed_demo_data(runtime.db)
            log.info("catalog.seeded", products_created=created)

    async def sweep() -> None:
        await sweep_forever(runtime)

    return token_checking_server(
        "catalog",
        settings,
        runtime,
        (catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogServicer(runtime), SERVICE_NAME),
        migrations_dir=MIGRATIONS_DIR,
        on_start=[seed],
        background=[sweep],
    )
