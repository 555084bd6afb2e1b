"""Wiring of the orders service: database, clients, token verifier, servicer, lifecycle, and the
background loops (checkout recovery, outbox relay, idempotency-key purge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import structlog

from services.orders.checkout import Checkout
from services.orders.config import OrdersSettings
from services.orders.lifecycle import Lifecycle
from services.orders.outbox import OutboxRelay
from services.orders.servicer import OrdersServicer
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.mail import build_mailer
from shop.lib.runtime import remote_token_verifier
from shop.lib.server import ServiceDefinition, ShopServer
from shop.orders.v1 import orders_pb2, orders_pb2_grpc

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name
log = structlog.get_logger("orders.server")


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: OrdersSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "orders")
        self.mailer = build_mailer(settings)
        # In-process pub/sub of order changes (WatchOrder); other replicas are seen by polling.
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        # Tests only: (step, user id) → an event the checkout waits for at that step.
        self.holds: dict[tuple[str, str], asyncio.Event] = {}
        self.checkout = Checkout(self)
        self.outbox = OutboxRelay(self)
        self.lifecycle = Lifecycle(self)

    def notify(self, order_id: str) -> None:
        for event in self._subscribers.get(order_id, ()):
            event.set()

    @contextlib.contextmanager
    def subscribe(self, order_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers.setdefault(order_id, set()).add(event)
        try:
            yield event
        finally:
            listeners = self._subscribers.get(order_id)
            if listeners is not None:
                listeners.discard(event)
                if not listeners:
                    self._subscribers.pop(order_id, None)

    async def hold(self, step: str, user_id: str) -> None:
        """Tests only: wait at a named checkout step for this user until the test releases it."""
        if self.settings.is_production or not self.holds:
            return
        event = self.holds.get((step, user_id))
        if event is not None:
            await asyncio.wait_for(event.wait(), 60)


def build_server(settings: OrdersSettings | None = None) -> ShopServer:
    settings = settings or OrdersSettings()
    runtime = Runtime(settings)
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)

    definition = ServiceDefinition(
        migrations_dir=MIGRATIONS_DIR,
        runtime=runtime,
        name="orders",
        servicers=[(orders_pb2_grpc.add_OrdersServiceServicer_to_server, OrdersServicer(runtime), SERVICE_NAME)],
        verifier=verifier,
        on_stop=[runtime.clients.close, runtime.db.dispose],
        background=[
            poll_revocations,
            runtime.checkout.recovery_loop,
            runtime.outbox.loop,
            runtime.checkout.purge_loop,
        ],
    )
    return ShopServer(definition, settings)
