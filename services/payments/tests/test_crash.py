"""Crash safety: the payments process dies after Stripe charged but before the charge is recorded
(the row is still PENDING); the retry after restart gets the same PaymentIntent (idempotency key =
order id), so the customer is charged once and one payment row exists."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.payments.tests.fake_stripe import FakeStripeServer
from shop.lib.errors import decode_rpc_error
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import TEST_PAGE_TOKEN_SECRET, acting_channel, free_port, identity_env, run_process

pytestmark = pytest.mark.slow


async def wait_serving(address: str, process, timeout: float = 60.0) -> None:
    channel = grpc.aio.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            assert process.poll() is None, "payments exited during start"
            try:
                # types-grpcio-health-checking declares HealthStub without its methods
                answer = await stub.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("payments did not become SERVING")
    finally:
        await channel.close()


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


async def test_crash_between_provider_charge_and_commit_charges_once(suite, tmp_path):
    with FakeStripeServer() as fake:
        url = suite.databases.create("payments_crash")
        port = free_port()
        env = {
            "SHOP_ENV": "test",
            "SHOP_DATABASE_URL": url,
            "SHOP_GRPC_ADDRESS": f"127.0.0.1:{port}",
            **identity_env("payments"),
            "SHOP_PAGE_TOKEN_SECRET": TEST_PAGE_TOKEN_SECRET,
            "SHOP_AUTH_TARGET": f"127.0.0.1:{suite.ports['auth']}",
            "SHOP_PAYMENT_PROVIDER": "stripe",
            "STRIPE_API_KEY": "sk_test_fake",
            "STRIPE_WEBHOOK_SECRET": "whsec_test",
            "SHOP_STRIPE_API_BASE": fake.url,
            "SHOP_STRIPE_MAX_NETWORK_RETRIES": "0",
            "SHOP_LOG_LEVEL": "WARNING",
        }
        address = f"127.0.0.1:{port}"
        args = [sys.executable, "-m", "services.payments"]
        order_id = str(uuid.uuid4())
        request = payments_pb2.CreateChargeRequest(
            order_id=order_id, user_id="u", amount_cents=990, currency_code="USD", method="card", token="tok_visa"
        )

        crashing = run_process(args, {**env, "SHOP_CRASH_AT": "payments_after_provider_charge"}, tmp_path / "1.log")
        channel = acting_channel(address, "payments")
        try:
            await wait_serving(address, crashing)
            stub = payments_pb2_grpc.PaymentsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CreateCharge(request, timeout=15)
            assert decode_rpc_error(info.value).grpc_code == grpc.StatusCode.UNAVAILABLE
            assert crashing.wait(timeout=20) == 86
            assert fake.state.created_intents == 1
            import psycopg

            def rows():
                with psycopg.connect(url) as conn:
                    return conn.execute(
                        "SELECT status, provider_reference FROM payments WHERE order_id = %s", (order_id,)
                    ).fetchall()

            # the row was committed PENDING before the provider call (no transaction is held across it)
            assert rows() == [("PENDING", "")]

            restarted = run_process(args, env, tmp_path / "2.log")
            try:
                await wait_serving(address, restarted)
                # the channel may still be backing off from the crash: wait until it reconnects
                response = await stub.CreateCharge(request, timeout=30, wait_for_ready=True)
                assert response.payment.status == payments_pb2.PAYMENT_STATUS_SUCCEEDED
                assert fake.state.created_intents == 1  # Stripe replayed the first intent
                [intent_id] = fake.state.intents
                assert rows() == [("SUCCEEDED", intent_id)]
                assert [r.headers["idempotency-key"] for r in fake.state.requests] == [order_id, order_id]
            finally:
                stop(restarted)
        finally:
            stop(crashing)
            await channel.close()
