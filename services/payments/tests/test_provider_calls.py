"""Provider calls under faults: no database transaction or row lock is held while the provider
works (a slow provider must not exhaust the pool nor block webhooks), concurrent charges of one
order still reach the provider once, refunds are reserved before the provider call, and the
circuit breaker stops calling a provider that keeps failing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.payments.domain import signature_header
from services.payments.providers.base import ProviderUnavailable
from shop.lib.errors import ShopError, decode_rpc_error
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import acting_channel

S = payments_pb2.PaymentStatus


class Wrapped:
    """A provider in front of the real sandbox: optionally slow, optionally failing (per call)."""

    def __init__(self, inner: Any, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.calls: list[str] = []
        self.charge_error: ShopError | None = None
        self.refund_errors: list[ShopError] = []  # raised by the next refund calls, in order

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, **kwargs: Any):
        self.calls.append("charge")
        await asyncio.sleep(self.delay)
        if self.charge_error is not None:
            raise self.charge_error
        return await self.inner.charge(**kwargs)

    async def refund(self, **kwargs: Any):
        self.calls.append("refund")
        await asyncio.sleep(self.delay)
        if self.refund_errors:
            raise self.refund_errors.pop(0)
        return await self.inner.refund(**kwargs)


class Server:
    def __init__(self, server: Any, stub: Any, url: str) -> None:
        self.server, self.stub, self.url = server, stub, url
        self.runtime = server.definition.servicers[0][1].runtime
        self.sandbox = self.runtime.provider

    def wrap(self, **kwargs: Any) -> Wrapped:
        wrapped = Wrapped(self.sandbox, **kwargs)
        self.runtime.provider = wrapped
        return wrapped

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            return conn.execute(query, params).fetchall()


@contextlib.asynccontextmanager
async def payments_server(suite, **overrides: Any) -> AsyncIterator[Server]:
    """A payments server of its own (own database, own settings) with the sandbox provider."""
    import services.payments.server as server_module

    url = suite.databases.create("payments_faults")
    settings = suite.service_settings("payments", database_url=url, grpc_address="127.0.0.1:0", **overrides)
    server = server_module.build_server(settings)
    await server.start()
    channel = acting_channel(server.address, "payments")
    try:
        yield Server(server, payments_pb2_grpc.PaymentsServiceStub(channel), url)
    finally:
        await channel.close()
        await server.stop(grace=0.5)


def charge_request(order_id: str, token: str = "tok_visa", amount: int = 5000):
    return payments_pb2.CreateChargeRequest(
        order_id=order_id, user_id="user-1", amount_cents=amount, currency_code="USD", method="card", token=token
    )


def refund_request(order_id: str, amount: int, request_id: str | None = None):
    return payments_pb2.CreateRefundRequest(
        order_id=order_id, amount_cents=amount, reason="test", request_id=request_id or uuid.uuid4().hex
    )


def webhook(server: Server, payment: payments_pb2.Payment, event_type: str = "payment_intent.succeeded"):
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": payment.provider_reference,
                "amount_received": payment.amount_cents,
                "metadata": {"order_id": payment.order_id},
            }
        },
    }
    payload = json.dumps(body).encode()
    signature = signature_header(payload, server.runtime.settings.sandbox_webhook_secret, int(time.time()))
    return payments_pb2.HandleWebhookRequest(provider="sandbox", payload=payload, signature=signature)


async def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # noqa: ASYNC110 - polls state another task changes
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


# -- no database work held across a provider call ------------------------------------------------


async def test_a_slow_provider_does_not_hold_the_pool_or_block_webhooks(suite):
    """More provider calls in flight than the pool has connections: a webhook and a listing for
    another payment still answer at once, and every charge and refund completes afterwards."""
    async with payments_server(suite, db_pool_size=2, db_max_overflow=0) as server:
        other = (await server.stub.CreateCharge(charge_request(str(uuid.uuid4())))).payment
        to_refund = [(await server.stub.CreateCharge(charge_request(str(uuid.uuid4())))).payment for _ in range(2)]
        charges_before = server.sandbox.charge_count
        wrapped = server.wrap(delay=8.0)
        orders = [str(uuid.uuid4()) for _ in range(4)]
        calls = [
            asyncio.ensure_future(server.stub.CreateCharge(charge_request(order_id), timeout=60)) for order_id in orders
        ]
        calls += [
            asyncio.ensure_future(server.stub.CreateRefund(refund_request(payment.order_id, 1000), timeout=60))
            for payment in to_refund
        ]
        await until(lambda: len(wrapped.calls) >= 2)  # the provider is working on the first calls
        await asyncio.sleep(0.3)

        started = time.monotonic()
        answer = await server.stub.HandleWebhook(webhook(server, other), timeout=30)
        listing = await server.stub.ListPayments(payments_pb2.ListPaymentsRequest(order_id=other.order_id), timeout=30)
        elapsed = time.monotonic() - started
        assert not answer.duplicate and [p.id for p in listing.payments] == [other.id]
        # the provider sleeps 8 s; a blocked pool would make these wait for it (twice: 4 calls, 2 connections)
        assert elapsed < 4.0, f"webhook + listing took {elapsed:.1f}s while the provider was slow"
        assert not all(call.done() for call in calls)

        results = await asyncio.gather(*calls)
        for order_id, result in zip(orders, results[:4], strict=True):
            assert (result.payment.order_id, result.payment.status) == (order_id, S.PAYMENT_STATUS_SUCCEEDED)
            assert result.payment.captured_cents == 5000 and result.payment.provider_reference
        for payment, result in zip(to_refund, results[4:], strict=True):
            assert result.refund.status == payments_pb2.REFUND_STATUS_SUCCEEDED
            assert (result.payment.id, result.payment.refunded_cents) == (payment.id, 1000)
            assert result.payment.status == S.PAYMENT_STATUS_PARTIALLY_REFUNDED
        assert server.sandbox.charge_count == charges_before + 4
        assert server.sql("SELECT status, count(*) FROM payments GROUP BY status ORDER BY status") == [
            ("PARTIALLY_REFUNDED", 2),
            ("SUCCEEDED", 5),
        ]


async def test_concurrent_charges_of_one_order_reach_the_provider_once(suite):
    async with payments_server(suite) as server:
        server.wrap(delay=1.0)
        before = server.sandbox.charge_count
        order_id = str(uuid.uuid4())
        first, second = await asyncio.gather(*(server.stub.CreateCharge(charge_request(order_id)) for _ in range(2)))
        assert first.payment == second.payment
        assert first.payment.status == S.PAYMENT_STATUS_SUCCEEDED
        assert server.sandbox.charge_count == before + 1
        assert server.sql("SELECT count(*) FROM payments WHERE order_id = %s", (order_id,)) == [(1,)]


async def test_sandbox_charges_once_per_key_even_concurrently():
    from services.payments.providers.sandbox import SandboxProvider

    sandbox = SandboxProvider(webhook_secret="x" * 40)
    sandbox.delay_seconds = 0.2  # test hook: the "network" time of a charge

    def charge(token: str = "tok_visa"):
        return sandbox.charge(
            idempotency_key="order-1", amount_cents=100, currency_code="USD", token=token, metadata={}
        )

    results = await asyncio.gather(*(charge() for _ in range(5)))
    assert {result.reference for result in results} == {results[0].reference}
    assert sandbox.charge_count == 1


# -- charges: what a provider error leaves behind -------------------------------------------------


async def test_provider_outage_leaves_the_charge_pending_and_a_retry_completes_it(suite):
    async with payments_server(suite, provider_breaker_failures=100) as server:  # (the breaker is tested below)
        wrapped = server.wrap()
        wrapped.charge_error = ProviderUnavailable("The payment provider is unavailable: test.")
        order_id = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.CreateCharge(charge_request(order_id))
        assert decode_rpc_error(info.value).code == "PAYMENT_PROVIDER_UNAVAILABLE"
        # the outcome is unknown (a timeout may have charged): the payment stays PENDING
        assert server.sql("SELECT status, provider_reference FROM payments WHERE order_id = %s", (order_id,)) == [
            ("PENDING", "")
        ]
        wrapped.charge_error = None
        paid = (await server.stub.CreateCharge(charge_request(order_id))).payment
        assert paid.status == S.PAYMENT_STATUS_SUCCEEDED and paid.captured_cents == 5000


async def test_a_webhook_that_got_there_first_is_not_overwritten(suite):
    """The provider's success webhook lands while CreateCharge is still waiting for the provider:
    recording the (same) result afterwards keeps the webhook's state and never moves it back."""
    async with payments_server(suite) as server:
        wrapped = server.wrap(delay=1.0)
        order_id = str(uuid.uuid4())
        call = asyncio.ensure_future(server.stub.CreateCharge(charge_request(order_id, amount=3000)))
        await until(lambda: bool(wrapped.calls))
        [(payment_id,)] = server.sql("SELECT id FROM payments WHERE order_id = %s", (order_id,))
        # a refund webhook for the whole amount (captured and refunded) before the charge is recorded
        pending = payments_pb2.Payment(id=payment_id, order_id=order_id, amount_cents=3000, provider_reference="")
        request = webhook(server, pending, "charge.refunded")
        body = json.loads(request.payload)
        body["data"]["object"].update(amount_captured=3000, amount_refunded=3000)
        payload = json.dumps(body).encode()
        request = payments_pb2.HandleWebhookRequest(
            provider="sandbox",
            payload=payload,
            signature=signature_header(payload, server.runtime.settings.sandbox_webhook_secret, int(time.time())),
        )
        await server.stub.HandleWebhook(request)
        paid = (await call).payment
        assert (paid.status, paid.captured_cents, paid.refunded_cents) == (S.PAYMENT_STATUS_REFUNDED, 3000, 3000)
        assert paid.provider_reference and paid.brand == "visa"


# -- refunds: reserved before the provider call --------------------------------------------------


async def test_refund_with_unknown_outcome_stays_reserved_and_a_replay_completes_it(suite):
    async with payments_server(suite, provider_breaker_failures=100) as server:  # (the breaker is tested below)
        order_id = (await server.stub.CreateCharge(charge_request(str(uuid.uuid4()), amount=1000))).payment.order_id
        wrapped = server.wrap()
        # more failures than the client's retry policy has attempts (CreateRefund is retried on UNAVAILABLE)
        wrapped.refund_errors = [ProviderUnavailable("The payment provider is unavailable: test.")] * 5
        refunds_before = server.sandbox.refund_count
        request = refund_request(order_id, 600)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.CreateRefund(request)
        assert decode_rpc_error(info.value).code == "PAYMENT_PROVIDER_UNAVAILABLE"
        # reserved: the amount counts against what remains while the provider's answer is unknown
        assert server.sql("SELECT status, amount_cents FROM refunds WHERE order_id = %s", (order_id,)) == [
            ("PENDING", 600)
        ]
        assert server.sql("SELECT refunded_cents FROM payments WHERE order_id = %s", (order_id,)) == [(600,)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.CreateRefund(refund_request(order_id, 500))
        assert decode_rpc_error(info.value).code == "REFUND_EXCEEDS_CAPTURED"
        # the replay asks the provider again with the same key and completes the refund
        done = await server.stub.CreateRefund(request)
        assert done.refund.status == payments_pb2.REFUND_STATUS_SUCCEEDED and done.refund.provider_reference
        assert (done.payment.status, done.payment.refunded_cents) == (S.PAYMENT_STATUS_PARTIALLY_REFUNDED, 600)
        assert server.sandbox.refund_count == refunds_before + 1
        again = await server.stub.CreateRefund(request)
        assert again.refund == done.refund
        assert server.sandbox.refund_count == refunds_before + 1


async def test_refund_refused_by_the_provider_releases_the_reservation(suite):
    async with payments_server(suite) as server:
        order_id = (await server.stub.CreateCharge(charge_request(str(uuid.uuid4()), amount=1000))).payment.order_id
        wrapped = server.wrap()
        wrapped.refund_errors = [ShopError("The payment provider refused the refund: test.", code="REFUND_FAILED")]
        request = refund_request(order_id, 700)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.CreateRefund(request)
        assert decode_rpc_error(info.value).code == "REFUND_FAILED"
        assert server.sql("SELECT status, amount_cents FROM refunds WHERE order_id = %s", (order_id,)) == [
            ("FAILED", 700)
        ]
        assert server.sql("SELECT status, refunded_cents FROM payments WHERE order_id = %s", (order_id,)) == [
            ("SUCCEEDED", 0)
        ]
        # the same request id stays refused (without asking the provider again); a new one refunds
        calls = len(wrapped.calls)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.CreateRefund(request)
        assert decode_rpc_error(info.value).code == "REFUND_FAILED"
        assert len(wrapped.calls) == calls
        done = await server.stub.CreateRefund(refund_request(order_id, 0))
        assert (done.refund.amount_cents, done.payment.status) == (1000, S.PAYMENT_STATUS_REFUNDED)


# -- the provider circuit breaker ----------------------------------------------------------------


async def test_a_failing_provider_is_called_at_most_n_times_within_the_cool_down(suite):
    async with payments_server(suite, provider_breaker_failures=3, provider_breaker_reset_seconds=60) as server:
        wrapped = server.wrap()
        wrapped.charge_error = ProviderUnavailable("The payment provider is unavailable: test.")
        orders = [str(uuid.uuid4()) for _ in range(8)]
        for order_id in orders:  # each call is also retried by the client's retry policy
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await server.stub.CreateCharge(charge_request(order_id))
            remote = decode_rpc_error(info.value)
            assert (remote.grpc_code, remote.code) == (grpc.StatusCode.UNAVAILABLE, "PAYMENT_PROVIDER_UNAVAILABLE")
        assert wrapped.calls == ["charge"] * 3
        assert remote.retry_after is not None and 0 < remote.retry_after <= 60
        # failing fast records nothing: only orders whose calls reached the provider have a (PENDING) row
        recorded = server.sql("SELECT order_id, status FROM payments")
        assert 1 <= len(recorded) <= 3 and {status for _, status in recorded} == {"PENDING"}
        assert orders[-1] not in {order_id for order_id, _ in recorded}
        # reads do not need the provider
        listing = await server.stub.ListPayments(payments_pb2.ListPaymentsRequest(order_id=recorded[0][0]))
        assert [p.status for p in listing.payments] == [S.PAYMENT_STATUS_PENDING]

        # refunds: the same budget of N calls; once open, a new refund fails fast before reserving
        wrapped.charge_error = None
        server.runtime.breaker.reset()
        paid = (await server.stub.CreateCharge(charge_request(orders[-1]))).payment
        wrapped.refund_errors = [ProviderUnavailable("The payment provider is unavailable: test.")] * 10
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await server.stub.CreateRefund(refund_request(paid.order_id, 100))
            assert decode_rpc_error(info.value).code == "PAYMENT_PROVIDER_UNAVAILABLE"
        assert wrapped.calls.count("refund") == 3
        [(reserved,)] = server.sql("SELECT count(*) FROM refunds")
        assert 1 <= reserved <= 3
        with pytest.raises(grpc.aio.AioRpcError):
            await server.stub.CreateRefund(refund_request(paid.order_id, 100))
        assert server.sql("SELECT count(*) FROM refunds") == [(reserved,)]
