"""Crash safety of checkout (DESIGN.md "Checkout"): the orders service runs as its own process,
is killed at a named step (SHOP_CRASH_AT), and started again without it. Within 30 s every
order must be PAID with its stock committed, or failed with nothing reserved and nothing kept
charged; a replay of the in-flight request's Idempotency-Key returns the final order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from shop.orders.v1 import orders_pb2
from tests.harness import free_port, identity_settings, run_process
from tests.invariants.orders_helpers import (
    ADDRESS,
    add_to_cart,
    eventually,
    make_product,
    money,
    reservation_status,
    reserved_and_sold,
    stock,
)

INITIAL_STOCK = 5
QUANTITY = 2


class OrdersProcess:
    """`python -m services.orders` against the suite's other services and its own database."""

    def __init__(self, suite, database_url: str) -> None:
        self.suite = suite
        self.port = free_port()
        self.database_url = database_url
        self.process: subprocess.Popen | None = None
        self.log = suite.tmp / f"orders-{self.port}.log"

    def env(self, crash_at: str = "") -> dict[str, str]:
        settings = self.suite.service_settings(
            "orders",
            database_url=self.database_url,
            grpc_address=f"127.0.0.1:{self.port}",
            stale_after_seconds=2.0,
            recovery_interval_seconds=0.5,
            outbox_interval_seconds=0.2,
            outbox_lock_seconds=3.0,
        )
        names = (
            "env",
            "service_key",
            "service_public_keys",
            "page_token_secret",
            "auth_target",
            "catalog_target",
            "cart_target",
            "payments_target",
            "database_url",
            "grpc_address",
            "grace_seconds",
            "mail_backend",
            "mail_dir",
            "frontend_url",
            "stale_after_seconds",
            "recovery_interval_seconds",
            "outbox_interval_seconds",
            "outbox_lock_seconds",
            "revocation_poll_seconds",
        )
        env = {f"SHOP_{name.upper()}": str(getattr(settings, name)) for name in names}
        env["SHOP_ORDERS_TARGET"] = f"127.0.0.1:{self.port}"
        env["SHOP_CRASH_AT"] = crash_at
        env["SHOP_LOG_LEVEL"] = "WARNING"
        return env

    async def start(self, crash_at: str = "") -> None:
        python = os.path.join(os.getcwd(), ".venv", "bin", "python")
        self.process = run_process([python, "-m", "services.orders"], self.env(crash_at), self.log)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        try:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving():
                try:
                    # types-grpcio-health-checking declares HealthStub without its methods
                    reply = await health.Check(  # type: ignore[attr-defined]
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                except grpc.aio.AioRpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, timeout=30, interval=0.2)
        finally:
            await channel.close()

    async def wait_exit(self, timeout: float = 20) -> int:
        assert self.process is not None, "the orders process was not started"
        for _ in range(int(timeout / 0.1)):
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.1)
        raise AssertionError("the orders process did not exit")

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


@pytest.fixture(scope="module")
def crash_database(suite):
    return suite.databases.create("orders_crash")


def stub_for(suite, port: int):
    settings = BaseShopSettings(
        **{**suite.common(), **identity_settings("gateway"), "orders_target": f"127.0.0.1:{port}"}
    )
    clients = ServiceClients(settings, "gateway")  # what calls CreateOrder

    return clients, clients.orders


def create_request(key: str, token: str) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        request_id=key,
        shipping_address=orders_pb2.ShippingAddress(
            first_name=ADDRESS["firstName"],
            last_name=ADDRESS["lastName"],
            line1=ADDRESS["line1"],
            city=ADDRESS["city"],
            postal_code=ADDRESS["postalCode"],
            country=ADDRESS["country"],
        ),
        payment_method="card",
        payment_token=token,
    )


@pytest.mark.parametrize(
    ("crash_at", "token", "final"),
    [
        ("after_pending_recorded", "tok_visa", "PAID"),
        ("after_cart_taken", "tok_visa", "PAID"),
        ("after_stock_reserved", "tok_visa", "PAID"),
        ("after_charge", "tok_visa", "PAID"),
        ("after_paid_recorded", "tok_visa", "PAID"),
        ("after_charge", "tok_chargeDeclined", "PAYMENT_FAILED"),
        ("after_payment_failed_recorded", "tok_chargeDeclined", "PAYMENT_FAILED"),
    ],
)
async def test_a_crash_at_any_step_is_finished_or_compensated(suite, crash_database, crash_at, token, final):
    user = await suite.register()
    product = await make_product(suite, price=4000, stock=INITIAL_STOCK)
    await add_to_cart(suite, user, product, QUANTITY)
    metadata = (("authorization", f"Bearer {user['tokens']['accessToken']}"),)
    key = str(uuid.uuid4())
    orders = OrdersProcess(suite, crash_database)
    clients, stub = stub_for(suite, orders.port)
    try:
        await orders.start(crash_at=crash_at)
        # The in-flight request dies with the process.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateOrder(create_request(key, token), metadata=metadata, timeout=30)
        assert caught.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.CANCELLED,
        )
        assert await orders.wait_exit() == 86
        order_id, _status = _order_row(crash_database, user["user"]["id"])

        await orders.start()  # the same database, no crash point
        await clients.close()  # a fresh channel (the old one backs off after the crash)
        clients, stub = stub_for(suite, orders.port)

        async def replayed():
            try:
                response = await stub.CreateOrder(create_request(key, token), metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                # REQUEST_IN_PROGRESS until recovered; UNAVAILABLE while the channel reconnects
                if exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE):
                    return None
                return exc
            return response

        outcome = await eventually(replayed, timeout=30, interval=0.3)
        if final == "PAID":
            assert not isinstance(outcome, grpc.aio.AioRpcError), outcome
            assert outcome.replayed and outcome.order.id == order_id
            assert outcome.order.status == orders_pb2.ORDER_STATUS_PAID
            total = outcome.order.total_cents
        else:
            assert isinstance(outcome, grpc.aio.AioRpcError)
            assert outcome.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert dict(outcome.initial_metadata() or ()).get("idempotent-replayed") == "true"
            total = 0

        def settled():
            status = _order_row(crash_database, user["user"]["id"])[1]
            reserved, sold = reserved_and_sold(suite, product)
            pending = _pending_outbox(crash_database, order_id)
            return status == final and reserved == 0 and pending == 0 and (status, reserved, sold)

        _status, reserved, sold = await eventually(settled, timeout=30)
        # the invariants: money kept = what the order says; stock conserved
        captured, refunded = money(suite, order_id)
        assert captured - refunded == total
        assert stock(suite, product) + reserved + sold == INITIAL_STOCK
        assert sold == (QUANTITY if final == "PAID" else 0)
        assert suite.sql(
            "payments", "SELECT count(*) FROM payments WHERE order_id = %s AND captured_cents > 0", (order_id,)
        ) == [(1 if final == "PAID" else 0,)]
        # and for every order this crash database holds (earlier crash tests' too)
        for other_id, other_status, other_total in _all_orders(crash_database):
            captured, refunded = money(suite, other_id)
            kept = other_total if other_status == "PAID" else 0
            assert (other_status, captured - refunded) == (other_status, kept)
            assert other_status in ("PAID", "PAYMENT_FAILED", "CANCELLED")
            expected = ("COMMITTED",) if other_status == "PAID" else ("RELEASED", None)
            assert reservation_status(suite, other_id) in expected, (other_id, other_status)
    finally:
        await orders.stop()
        await clients.close()


def _order_row(database_url: str, user_id: str) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT id, status FROM orders WHERE user_id = %s", (user_id,)).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def _pending_outbox(database_url: str, order_id: str) -> int:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE order_id = %s AND state = 'pending'", (order_id,)
        ).fetchone()
        assert row is not None  # an aggregate answers one row
        return row[0]


def _all_orders(database_url: str) -> list[tuple[str, str, int]]:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        return conn.execute("SELECT id, status, total_cents FROM orders").fetchall()
