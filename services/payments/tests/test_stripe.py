"""The Stripe provider (official SDK) against a local fake of Stripe's API: charges, declines,
refunds, idempotency keys sent, webhook verification with the SDK; and a payments server running
the Stripe provider end to end over gRPC."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import pytest
import stripe

from services.payments.domain import InvalidSignature
from services.payments.providers.base import InvalidPaymentToken, ProviderUnavailable
from services.payments.providers.stripe import StripeProvider
from services.payments.tests.fake_stripe import FakeStripeServer
from shop.lib.errors import decode_rpc_error
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import acting_channel

API_KEY = "sk_test_fake"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef0123456789"


@pytest.fixture
def fake():
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
async def provider(fake):
    provider = StripeProvider(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=fake.url, max_network_retries=0)
    yield provider
    await provider.aclose()


async def charge(provider, order_id: str, token: str, amount: int = 2500):
    return await provider.charge(
        idempotency_key=order_id,
        amount_cents=amount,
        currency_code="USD",
        token=token,
        metadata={"order_id": order_id},
    )


@pytest.mark.parametrize(
    ("token", "brand", "last4"), [("pm_card_visa", "visa", "4242"), ("tok_mastercard", "mastercard", "4444")]
)
async def test_charge_creates_and_confirms_a_payment_intent(fake, provider, token, brand, last4):
    order_id = str(uuid.uuid4())
    result = await charge(provider, order_id, token)
    assert result.succeeded and result.reference.startswith("pi_")
    assert (result.captured_cents, result.brand, result.last4) == (2500, brand, last4)
    [request] = fake.state.requests
    assert request.path == "/v1/payment_intents"
    assert request.headers["idempotency-key"] == order_id
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.params["confirm"] == "true"
    assert request.params["amount"] == "2500" and request.params["currency"] == "usd"
    assert request.params["metadata[order_id]"] == order_id
    token_param = "payment_method" if token.startswith("pm_") else "payment_method_data[card][token]"
    assert request.params[token_param] == token


async def test_repeated_charge_is_idempotent_at_stripe(fake, provider):
    order_id = str(uuid.uuid4())
    first = await charge(provider, order_id, "pm_card_visa")
    second = await charge(provider, order_id, "pm_card_visa")
    assert first.reference == second.reference
    assert fake.state.created_intents == 1
    assert [r.headers["idempotency-key"] for r in fake.state.requests] == [order_id, order_id]


@pytest.mark.parametrize(
    ("token", "code"),
    [("pm_card_chargeDeclined", "generic_decline"), ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds")],
)
async def test_declined_card_is_a_declined_result(provider, token, code):
    result = await charge(provider, str(uuid.uuid4()), token)
    assert not result.succeeded and not result.pending
    assert result.decline_code == code
    assert result.reference.startswith("pi_") and result.last4


async def test_unknown_payment_method_is_invalid_token(provider):
    with pytest.raises(InvalidPaymentToken):
        await charge(provider, str(uuid.uuid4()), "pm_nope")


def test_check_token_accepts_tokens_and_payment_methods_only(provider):
    for good in ("tok_visa", "pm_card_visa", "pm_1NXa2b"):
        provider.check_token(good)
    for bad in ("", "tok_", "card_123", "tok_visa; drop", "sk_live_x"):
        with pytest.raises(InvalidPaymentToken):
            provider.check_token(bad)


async def test_stripe_outage_is_unavailable(fake, provider):
    fake.state.fail_with = 503
    with pytest.raises(ProviderUnavailable):
        await charge(provider, str(uuid.uuid4()), "pm_card_visa")


async def test_the_sdk_makes_no_retries_of_its_own(fake):
    """Retries belong to the caller's retry policy and the order's recovery (bounded by the retry
    budget and the breaker), not to the SDK: with default settings an outage is one request."""
    from services.payments.config import PaymentsSettings
    from services.payments.providers import build_provider

    settings = PaymentsSettings(
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.url,
    )
    default_provider = build_provider(settings)
    try:
        fake.state.fail_with = 503
        with pytest.raises(ProviderUnavailable):
            await charge(default_provider, str(uuid.uuid4()), "pm_card_visa")
        assert len(fake.state.requests) == 1
    finally:
        await default_provider.aclose()


async def test_refund_sends_the_request_id_as_idempotency_key(fake, provider):
    paid = await charge(provider, str(uuid.uuid4()), "pm_card_visa", amount=3000)
    request_id = uuid.uuid4().hex
    refund = await provider.refund(
        idempotency_key=request_id, charge_reference=paid.reference, amount_cents=1000, reason="damaged"
    )
    again = await provider.refund(
        idempotency_key=request_id, charge_reference=paid.reference, amount_cents=1000, reason="damaged"
    )
    assert refund.reference.startswith("re_") and refund == again
    assert fake.state.created_refunds == 1
    request = fake.state.requests[-1]
    assert request.path == "/v1/refunds"
    assert request.headers["idempotency-key"] == request_id
    assert (request.params["payment_intent"], request.params["amount"]) == (paid.reference, "1000")


def signed(body: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=at or int(time.time()))


def stripe_event(kind: str = "payment_intent.succeeded") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "pi_1",
                    "object": "payment_intent",
                    "amount": 100,
                    "amount_received": 100,
                    "metadata": {"order_id": "o1"},
                }
            },
        }
    ).encode()


def test_webhook_verification_with_the_sdk(provider):
    body = stripe_event()
    event = provider.parse_webhook(body, signed(body))
    assert event.type == "payment_intent.succeeded" and event.payment_reference == "pi_1" and event.order_id == "o1"
    tampered = body.replace(b'"amount": 100', b'"amount": 1')
    for payload, header in [
        (tampered, signed(body)),
        (body, signed(body, secret="whsec_wrong")),
        (body, signed(body, at=int(time.time()) - 301)),
        (body, "t=1,v1=deadbeef"),
        (body, ""),
    ]:
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(payload, header)


def test_webhook_without_a_configured_secret_is_refused(fake):
    provider = StripeProvider(api_key=API_KEY, webhook_secret="", api_base=fake.url)
    body = stripe_event()
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(body, signed(body))


# -- a payments server running the Stripe provider ---------------------------------------------


@pytest.fixture
async def stripe_payments(suite, fake):
    import services.payments.server as server_module

    url = suite.databases.create("payments_stripe")
    settings = suite.service_settings(
        "payments",
        database_url=url,
        grpc_address="127.0.0.1:0",
        payment_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.url,
        stripe_max_network_retries=0,
    )
    server = server_module.build_server(settings)
    await server.start()
    channel = acting_channel(server.address, "payments")
    try:
        yield payments_pb2_grpc.PaymentsServiceStub(channel), url
    finally:
        await channel.close()
        await server.stop(grace=0.5)


def sql(url: str, query: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute(query, params).fetchall()


async def test_server_with_stripe_charges_once_declines_and_refunds(fake, stripe_payments):
    stub, url = stripe_payments
    order_id = str(uuid.uuid4())
    request = payments_pb2.CreateChargeRequest(
        order_id=order_id, user_id="u", amount_cents=4200, currency_code="EUR", method="card", token="tok_visa"
    )
    responses = await asyncio.gather(*(stub.CreateCharge(request) for _ in range(10)))
    assert {r.payment.id for r in responses} == {responses[0].payment.id}
    payment = responses[0].payment
    assert payment.status == payments_pb2.PAYMENT_STATUS_SUCCEEDED and payment.provider == "stripe"
    assert (payment.brand, payment.last4, payment.captured_cents) == ("visa", "4242", 4200)
    assert fake.state.created_intents == 1
    assert sql(url, "SELECT count(*), min(provider_reference) FROM payments WHERE order_id = %s", (order_id,)) == [
        (1, payment.provider_reference)
    ]

    declined_order = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id=declined_order, amount_cents=100, currency_code="EUR", token="tok_chargeDeclined"
            )
        )
    remote = decode_rpc_error(info.value)
    assert remote.code == "PAYMENT_DECLINED" and remote.details["declineCode"] == "generic_decline"
    assert sql(url, "SELECT status FROM payments WHERE order_id = %s", (declined_order,)) == [("DECLINED",)]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id=str(uuid.uuid4()), amount_cents=100, currency_code="EUR", token="tok_nonsense"
            )
        )
    assert decode_rpc_error(info.value).code == "INVALID_PAYMENT_TOKEN"

    refund = await stub.CreateRefund(
        payments_pb2.CreateRefundRequest(order_id=order_id, amount_cents=200, request_id="rf-1-" + order_id)
    )
    assert refund.refund.provider_reference.startswith("re_")
    assert fake.state.requests[-1].headers["idempotency-key"] == "rf-1-" + order_id
    rest = await stub.CreateRefund(payments_pb2.CreateRefundRequest(order_id=order_id, request_id="rf-2-" + order_id))
    assert rest.refund.amount_cents == 4000 and rest.payment.status == payments_pb2.PAYMENT_STATUS_REFUNDED

    # Stripe's own webhook for that payment, verified with the SDK, changes nothing more
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "charge.refunded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "ch_1",
                    "object": "charge",
                    "payment_intent": payment.provider_reference,
                    "amount": 4200,
                    "amount_captured": 4200,
                    "amount_refunded": 4200,
                }
            },
        }
    ).encode()
    answer = await stub.HandleWebhook(
        payments_pb2.HandleWebhookRequest(provider="stripe", payload=body, signature=signed(body))
    )
    assert not answer.duplicate
    assert sql(url, "SELECT status, captured_cents, refunded_cents FROM payments WHERE order_id = %s", (order_id,)) == [
        ("REFUNDED", 4200, 4200)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.HandleWebhook(
            payments_pb2.HandleWebhookRequest(
                provider="stripe", payload=body, signature=signed(body, secret="whsec_wrong")
            )
        )
    assert decode_rpc_error(info.value).code == "INVALID_SIGNATURE"


async def test_processing_intent_is_pending_then_resolved_on_repeat(fake, stripe_payments):
    stub, url = stripe_payments
    order_id = str(uuid.uuid4())
    request = payments_pb2.CreateChargeRequest(
        order_id=order_id, amount_cents=700, currency_code="USD", token="pm_card_processing"
    )
    pending = (await stub.CreateCharge(request)).payment
    assert pending.status == payments_pb2.PAYMENT_STATUS_PENDING and pending.provider_reference.startswith("pi_")
    still = (await stub.CreateCharge(request)).payment  # Stripe has not decided: still pending, asked again
    assert still.status == payments_pb2.PAYMENT_STATUS_PENDING
    assert [r.method for r in fake.state.requests] == ["POST", "GET"]
    fake.state.settle(pending.provider_reference)
    paid = (await stub.CreateCharge(request)).payment
    assert (paid.status, paid.captured_cents, paid.id) == (payments_pb2.PAYMENT_STATUS_SUCCEEDED, 700, pending.id)
    assert fake.state.created_intents == 1
    assert sql(url, "SELECT status FROM payments WHERE order_id = %s", (order_id,)) == [("SUCCEEDED",)]
