"""Wiring of the cart service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

import structlog

from services.cart import domain, repository
from services.cart.config import CartSettings
from services.cart.servicer import CartServicer
from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database, utcnow
from shop.lib.periodic import Periodic
from shop.lib.runtime import token_checking_server
from shop.lib.server import ShopServer

log = structlog.get_logger("cart")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = cart_pb2.DESCRIPTOR.services_by_name["CartService"].full_name


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: CartSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "cart")

    async def sweep_expired_guest_carts(self) -> int:
        """Deletes guest carts whose last change is older than SHOP_GUEST_CART_TTL_DAYS."""
        cutoff = domain.guest_cart_cutoff(utcnow(), self.settings.guest_cart_ttl_days)
        async with self.db.write() as tx:
            deleted = await repository.delete_expired_guest_carts(tx, cutoff)
        if deleted:
            log.info("cart.guest_carts_expired", deleted=deleted)
        return deleted

    async def sweep_old_requests(self) -> int:
        """Forgets AddCartItem idempotency keys older than SHOP_IDEMPOTENCY_TTL_HOURS."""
        cutoff = domain.request_cutoff(utcnow(), self.settings.idempotency_ttl_hours)
        async with self.db.write() as tx:
            return await repository.delete_old_requests(tx, cutoff)

    async def sweep_old_checkouts(self) -> int:
        """Purges CheckoutCart records older than SHOP_CHECKOUT_TTL_DAYS."""
        cutoff = domain.checkout_cutoff(utcnow(), self.settings.checkout_ttl_days)
        async with self.db.write() as tx:
            deleted = await repository.delete_old_checkouts(tx, cutoff)
        if deleted:
            log.info("cart.checkouts_purged", deleted=deleted)
        return deleted

    async def sweep_forever(self) -> None:
        """Background loop: one sweep at start, then every SHOP_SWEEP_INTERVAL_SECONDS."""
        await Periodic("cart.sweep", self.sweep_once, lambda: self.settings.sweep_interval_seconds)()

    async def sweep_once(self) -> None:
        await self.sweep_expired_guest_carts()
        await self.sweep_old_requests()
        await self.sweep_old_checkouts()


def build_server(settings: CartSettings | None = None) -> ShopServer:
    settings = settings or CartSettings()
    runtime = Runtime(settings)
    return token_checking_server(
        "cart",
        settings,
        runtime,
        (cart_pb2_grpc.add_CartServiceServicer_to_server, CartServicer(runtime), SERVICE_NAME),
        migrations_dir=MIGRATIONS_DIR,
        background=[runtime.sweep_forever],
    )
