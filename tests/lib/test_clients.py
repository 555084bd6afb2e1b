from __future__ import annotations

import asyncio
import json

import pytest

from shop.lib.clients import SERVICES, grpc_target, retryable_methods, service_config
from shop.lib.settings import BaseShopSettings
from tests.harness import identity_settings


def test_targets():
    assert grpc_target("127.0.0.1:50052") == "ipv4:127.0.0.1:50052"
    assert grpc_target("127.0.0.1:50052,127.0.0.1:50062") == "ipv4:127.0.0.1:50052,127.0.0.1:50062"
    assert grpc_target("catalog:50051") == "dns:///catalog:50051"
    assert grpc_target("dns:///catalog.shop.svc.cluster.local:50051") == "dns:///catalog.shop.svc.cluster.local:50051"
    with pytest.raises(ValueError):
        grpc_target("a:1,b:2")


def test_retry_policy_covers_reads_and_idempotent_writes_only():
    catalog = retryable_methods(SERVICES["catalog"][0])
    assert {"ListProducts", "GetProduct", "BatchGetProducts", "ReserveStock", "CommitReservation"} <= set(catalog)
    assert "CreateReview" not in catalog
    # The rule: reads, and writes whose request carries an idempotency key; nothing else.
    for descriptor, _ in SERVICES.values():
        retryable = set(retryable_methods(descriptor))
        for method in descriptor.methods:
            keyed = {"request_id", "reservation_id"} & set(method.input_type.fields_by_name)
            if method.name.startswith(("Get", "List", "BatchGet", "Watch")) or keyed:
                assert method.name in retryable, method.full_name
    assert "GetCart" in retryable_methods(SERVICES["cart"][0])
    assert {"CheckoutCart", "RestoreCart"} <= set(retryable_methods(SERVICES["cart"][0]))
    assert "ClearCart" not in retryable_methods(SERVICES["cart"][0])
    assert "Login" not in retryable_methods(SERVICES["auth"][0])
    assert "CreateCharge" in retryable_methods(SERVICES["payments"][0])
    config = json.loads(service_config(SERVICES["catalog"][0]))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_production_refuses_default_secrets():
    with pytest.raises(ValueError):
        BaseShopSettings(env="production")
    identity = identity_settings("orders")
    with pytest.raises(ValueError, match="SHOP_PAGE_TOKEN_SECRET"):
        BaseShopSettings(env="production", page_token_secret="short", **identity)
    for missing in ("service_key", "service_public_keys"):  # each process's own identity is required
        with pytest.raises(ValueError, match=f"SHOP_{missing.upper()}"):
            BaseShopSettings(
                env="production", page_token_secret="p" * 40, **{k: v for k, v in identity.items() if k != missing}
            )
    ok = BaseShopSettings(env="production", page_token_secret="p" * 40, **identity)
    assert ok.is_production
    assert BaseShopSettings(
        env="production",
        page_token_secret="p" * 40,
        service_key_file="/run/secrets/key",
        service_public_keys_file="/etc/shop/keys.json",
    ).is_production


def test_every_service_config_has_a_retry_budget():
    for descriptor, _ in SERVICES.values():
        config = json.loads(service_config(descriptor))
        throttling = config["retryThrottling"]
        assert throttling["maxTokens"] > 0 and 0 < throttling["tokenRatio"] < 1, descriptor.full_name


async def test_retries_stop_once_the_budget_is_spent():
    """A backend that always answers UNAVAILABLE: without a budget every call makes maxAttempts
    attempts; with it, retries stop after a few failures and each call is tried about once."""
    import grpc

    from shop.payments.v1 import payments_pb2_grpc

    attempts = 0

    class AlwaysUnavailable(payments_pb2_grpc.PaymentsServiceServicer):
        async def ListPayments(self, request, context):  # noqa: N802 - gRPC method name
            nonlocal attempts
            attempts += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down")

    from shop.lib.clients import make_channel
    from shop.payments.v1 import payments_pb2

    server = grpc.aio.server()
    payments_pb2_grpc.add_PaymentsServiceServicer_to_server(AlwaysUnavailable(), server)  # type: ignore[abstract]  # serves only the RPCs under test
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = make_channel(f"127.0.0.1:{port}", "payments", service_tokens=None)
    try:
        stub = payments_pb2_grpc.PaymentsServiceStub(channel)
        calls = 100
        for _ in range(calls):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListPayments(payments_pb2.ListPaymentsRequest(order_id="o"), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        max_attempts = json.loads(service_config(SERVICES["payments"][0]))["methodConfig"][0]["retryPolicy"][
            "maxAttempts"
        ]
        # unthrottled: calls × maxAttempts (500); throttled: retries until 50 tokens are spent, then
        # about one attempt per call (about 140)
        assert attempts < calls * max_attempts / 2, attempts
    finally:
        await channel.close()
        await server.stop(0)


@pytest.mark.slow
async def test_a_peer_that_starts_late_is_used_within_seconds():
    """A channel that failed to connect for a while (its caller started first, or the replica was
    down) must not wait out gRPC's default reconnect backoff, which grows toward 120 s: 17 s of
    failures put the default's next attempt about 10 s away; the shop's channels try every 5 s
    at most."""
    import socket
    import time

    import grpc

    from shop.lib.clients import make_channel
    from shop.payments.v1 import payments_pb2, payments_pb2_grpc

    class Answers(payments_pb2_grpc.PaymentsServiceServicer):
        async def ListPayments(self, request, context):  # noqa: N802 - gRPC method name
            return payments_pb2.ListPaymentsResponse()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = make_channel(f"127.0.0.1:{port}", "payments", service_tokens=None)
    stub = payments_pb2_grpc.PaymentsServiceStub(channel)
    request = payments_pb2.ListPaymentsRequest(order_id="o")
    server = None
    try:
        failing_until = time.monotonic() + 17
        while time.monotonic() < failing_until:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListPayments(request, timeout=2)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            await asyncio.sleep(0.5)

        server = grpc.aio.server()
        payments_pb2_grpc.add_PaymentsServiceServicer_to_server(Answers(), server)  # type: ignore[abstract]  # serves only the RPC under test
        assert server.add_insecure_port(f"127.0.0.1:{port}") == port
        await server.start()
        started = time.monotonic()
        while True:
            try:
                await stub.ListPayments(request, timeout=2)
                break
            except grpc.aio.AioRpcError:
                assert time.monotonic() - started < 7, "the channel did not try the peer again within 7 s"
                await asyncio.sleep(0.2)
    finally:
        await channel.close()
        if server is not None:
            await server.stop(0)
