"""Wiring of the orders service: database, clients, token verifier, servicer, lifecycle, and the
background loops (checkout recovery, outbox relay, idempotency-key purge)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from services.orders.checkout import Checkout
from services.orders.config import OrdersSettings
from services.orders.lifecycle import Lifecycle
from services.orders.outbox import OutboxRelay
from services.orders.refunds import Refunds
from services.orders.servicer import OrdersServicer
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.mail import build_mailer
from shop.lib.runtime import token_checking_server
from shop.lib.server import ShopServer
from shop.orders.v1 import orders_pb2, orders_pb2_grpc

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name
log = structlog.get_logger("orders.server")


class Runtime:
    """The service's one bootstrap: every collaborator built once per process and handed to the
    use cases that need it (checkout, lifecycle, refunds, outbox), none of which imports this module."""

    def __init__(self, settings: OrdersSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "orders")
        # Tests only: (step, user id) → an event the checkout waits for at that step.
        self.holds: dict[tuple[str, str], asyncio.Event] = {}
        self.outbox = OutboxRelay(settings=settings, db=self.db, clients=self.clients, mailer=build_mailer(settings))
        self.checkout = Checkout(
            settings=settings, db=self.db, clients=self.clients, outbox=self.outbox, hold=self.hold
        )
        self.lifecycle = Lifecycle(settings=settings, db=self.db, outbox=self.outbox)
        self.refunds = Refunds(
            settings=settings,
            db=self.db,
            clients=self.clients,
            outbox=self.outbox,
            lifecycle=self.lifecycle,
        )

    async def hold(self, step: str, user_id: str) -> bool:
        """Tests only: wait once at a named checkout step for this user until the test releases
        it; True when it waited."""
        if self.settings.is_production or not self.holds:
            return False
        event = self.holds.pop((step, user_id), None)
        if event is None:
            return False
        await asyncio.wait_for(event.wait(), 60)
        return True


def build_server(settings: OrdersSettings | None = None) -> ShopServer:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings)
    return token_checking_server(
        "orders",
        settings,
        runtime,
        (orders_pb2_grpc.add_OrdersServiceServicer_to_server, OrdersServicer(runtime), SERVICE_NAME),
        migrations_dir=MIGRATIONS_DIR,
        background=[runtime.checkout.recovery_loop, runtime.outbox.loop, runtime.checkout.purge_loop],
    )
