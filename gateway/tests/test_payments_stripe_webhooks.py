"""Stripe webhooks through the gateway: a gateway app pointed at a payments server configured with
the Stripe provider (against the local fake Stripe API); `Stripe-Signature` is verified by the SDK."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import stripe

from gateway.app import create_app
from services.payments.tests.fake_stripe import FakeStripeServer
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import acting_channel

WEBHOOK_SECRET = "whsec_gateway_test_0123456789abcdef"


@pytest.fixture
async def stripe_shop(suite):
    import services.payments.server as server_module

    with FakeStripeServer() as fake:
        settings = suite.service_settings(
            "payments",
            database_url=suite.databases.create("payments_gw_stripe"),
            grpc_address="127.0.0.1:0",
            payment_provider="stripe",
            stripe_api_key="sk_test_fake",
            stripe_webhook_secret=WEBHOOK_SECRET,
            stripe_api_base=fake.url,
            stripe_max_network_retries=0,
        )
        server = server_module.build_server(settings)
        await server.start()
        channel = acting_channel(server.address, "payments")
        app = create_app(suite.gateway_settings(payments_target=server.address))
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                    yield client, payments_pb2_grpc.PaymentsServiceStub(channel), settings.database_url
        finally:
            await channel.close()
            await server.stop(grace=0.5)


def sql(url: str, query: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute(query, params).fetchall()


async def test_stripe_signed_webhooks_through_the_gateway(stripe_shop):
    http, payments, url = stripe_shop
    order_id = str(uuid.uuid4())
    payment = (
        await payments.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id=order_id,
                user_id="u",
                amount_cents=2000,
                currency_code="USD",
                method="card",
                token="tok_visa",
            )
        )
    ).payment
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
                    "amount": 2000,
                    "amount_captured": 2000,
                    "amount_refunded": 500,
                    "metadata": {"order_id": order_id},
                }
            },
        }
    ).encode()

    def header(secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
        value = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=at or int(time.time())
        )
        return {"Stripe-Signature": value, "Content-Type": "application/json"}

    route = "/api/v1/payments/webhooks/stripe"
    for bad in (header("whsec_wrong"), header(at=int(time.time()) - 301)):
        response = await http.post(route, content=body, headers=bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_SIGNATURE"
    response = await http.post(route, content=body.replace(b"500", b"501"), headers=header())
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert sql(url, "SELECT status, refunded_cents FROM payments WHERE order_id = %s", (order_id,)) == [
        ("SUCCEEDED", 0)
    ]

    response = await http.post(route, content=body, headers=header())
    assert response.status_code == 200, response.text
    assert response.json()["data"]["duplicate"] is False
    again = await http.post(route, content=body, headers=header())
    assert again.status_code == 200 and again.json()["data"]["duplicate"] is True
    assert sql(url, "SELECT status, refunded_cents FROM payments WHERE order_id = %s", (order_id,)) == [
        ("PARTIALLY_REFUNDED", 500)
    ]
    # this gateway's payments runs Stripe: sandbox webhooks are not accepted
    response = await http.post(
        "/api/v1/payments/webhooks/sandbox", content=body, headers={"Sandbox-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "UNKNOWN_PROVIDER"
