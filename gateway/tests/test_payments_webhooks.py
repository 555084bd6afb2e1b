"""POST /api/v1/payments/webhooks/{provider} through the real gateway (sandbox provider, Stripe's
signature scheme): verification, once-only processing, out-of-order delivery."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest

from services.payments.domain import signature_header
from shop.lib.errors import decode_rpc_error
from shop.payments.v1 import payments_pb2

URL = "/api/v1/payments/webhooks/sandbox"


def secret(suite) -> str:
    return suite.servers["payments"].settings.sandbox_webhook_secret


def event(kind: str, obj: dict, *, event_id: str | None = None, created: int | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


def intent(payment, *, status: str = "succeeded") -> dict:
    return {
        "id": payment.provider_reference,
        "object": "payment_intent",
        "amount": payment.amount_cents,
        "amount_received": payment.amount_cents if status == "succeeded" else 0,
        "status": status,
        "metadata": {"order_id": payment.order_id},
        "last_payment_error": None if status == "succeeded" else {"code": "card_declined", "decline_code": "generic"},
    }


def charge_refunded(payment, refunded: int) -> dict:
    return {
        "id": f"ch_{uuid.uuid4().hex[:12]}",
        "object": "charge",
        "payment_intent": payment.provider_reference,
        "amount": payment.amount_cents,
        "amount_captured": payment.amount_cents,
        "amount_refunded": refunded,
        "refunded": refunded >= payment.amount_cents,
        "metadata": {"order_id": payment.order_id},
    }


async def post(suite, body: bytes, *, signature: str | None = None, key: str | None = None, at: int | None = None):
    header = signature or signature_header(body, key or secret(suite), at or int(time.time()))
    return await suite.http.post(
        URL, content=body, headers={"Sandbox-Signature": header, "Content-Type": "application/json"}
    )


async def charged(suite, amount: int = 4000):
    order_id = str(uuid.uuid4())
    response = await suite.stub("payments").CreateCharge(
        payments_pb2.CreateChargeRequest(
            order_id=order_id, user_id="u", amount_cents=amount, currency_code="USD", method="card", token="tok_visa"
        )
    )
    return response.payment


def state(suite, order_id: str) -> tuple:
    return suite.sql(
        "payments", "SELECT status, captured_cents, refunded_cents FROM payments WHERE order_id = %s", (order_id,)
    )[0]


def events(suite, event_id: str) -> list[tuple]:
    return suite.sql("payments", "SELECT event_type, outcome FROM webhook_events WHERE event_id = %s", (event_id,))


def event_id_of(body: bytes) -> str:
    return json.loads(body)["id"]


async def test_valid_refund_event_is_applied_once(suite):
    payment = await charged(suite)
    body = event("charge.refunded", charge_refunded(payment, 1000))
    response = await post(suite, body)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"eventId": event_id_of(body), "type": "charge.refunded", "duplicate": False}
    assert state(suite, payment.order_id) == ("PARTIALLY_REFUNDED", 4000, 1000)
    assert events(suite, event_id_of(body)) == [("charge.refunded", "applied")]


async def test_duplicate_event_id_changes_nothing(suite):
    payment = await charged(suite)
    event_id = f"evt_{uuid.uuid4().hex}"
    first = event("charge.refunded", charge_refunded(payment, 500), event_id=event_id)
    assert (await post(suite, first)).status_code == 200
    again = await post(suite, first)
    assert again.status_code == 200 and again.json()["data"]["duplicate"] is True
    # the same id with other (validly signed) content is still a duplicate: nothing changes
    other = event("charge.refunded", charge_refunded(payment, 4000), event_id=event_id)
    response = await post(suite, other)
    assert response.status_code == 200 and response.json()["data"]["duplicate"] is True
    assert state(suite, payment.order_id) == ("PARTIALLY_REFUNDED", 4000, 500)
    assert len(events(suite, event_id)) == 1


async def test_concurrent_duplicate_deliveries_apply_once(suite):
    import asyncio

    payment = await charged(suite)
    body = event("charge.refunded", charge_refunded(payment, 700))
    responses = await asyncio.gather(*(post(suite, body) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert sorted(r.json()["data"]["duplicate"] for r in responses) == [False, True, True, True, True]
    assert state(suite, payment.order_id) == ("PARTIALLY_REFUNDED", 4000, 700)


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "stale", "future", "missing", "malformed", "no_v1"])
async def test_bad_signatures_are_400_and_change_nothing(suite, case):
    payment = await charged(suite)
    body = event("charge.refunded", charge_refunded(payment, 4000))
    now = int(time.time())
    if case == "tampered":
        signature = signature_header(body, secret(suite), now)
        body = body.replace(b'"amount_refunded": 4000', b'"amount_refunded": 3999')
        response = await post(suite, body, signature=signature)
    elif case == "wrong_secret":
        response = await post(suite, body, key="whsec_not_the_right_secret_0123456789abcdef")
    elif case == "stale":
        response = await post(suite, body, at=now - 301)
    elif case == "future":
        response = await post(suite, body, at=now + 400)
    elif case == "missing":
        response = await suite.http.post(URL, content=body)
    elif case == "malformed":
        response = await post(suite, body, signature="garbage")
    else:
        valid = signature_header(body, secret(suite), now)
        response = await post(suite, body, signature=valid.replace("v1=", "v0="))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    assert state(suite, payment.order_id) == ("SUCCEEDED", 4000, 0)
    assert events(suite, event_id_of(body)) == []


async def test_signature_within_tolerance_is_accepted(suite):
    payment = await charged(suite)
    body = event("payment_intent.succeeded", intent(payment))
    response = await post(suite, body, at=int(time.time()) - 200)
    assert response.status_code == 200, response.text


async def test_refund_before_success_ends_refunded(suite):
    """charge.refunded delivered before the (older) payment_intent.succeeded: never moves back."""
    payment = await charged(suite)
    now = int(time.time())
    refunded = event("charge.refunded", charge_refunded(payment, 4000), created=now)
    succeeded = event("payment_intent.succeeded", intent(payment), created=now - 60)
    assert (await post(suite, refunded)).status_code == 200
    assert (await post(suite, succeeded)).status_code == 200
    assert state(suite, payment.order_id) == ("REFUNDED", 4000, 4000)


async def test_partial_refund_events_out_of_order_keep_the_larger_total(suite):
    payment = await charged(suite)
    now = int(time.time())
    later = event("charge.refunded", charge_refunded(payment, 3000), created=now)
    earlier = event("charge.refunded", charge_refunded(payment, 1000), created=now - 30)
    assert (await post(suite, later)).status_code == 200
    assert (await post(suite, earlier)).status_code == 200
    assert state(suite, payment.order_id) == ("PARTIALLY_REFUNDED", 4000, 3000)


async def test_failure_after_success_does_not_move_back(suite):
    payment = await charged(suite)
    response = await post(
        suite, event("payment_intent.payment_failed", intent(payment, status="requires_payment_method"))
    )
    assert response.status_code == 200
    assert state(suite, payment.order_id) == ("SUCCEEDED", 4000, 0)


async def test_refund_event_agrees_with_refunds_made_through_the_api(suite):
    payment = await charged(suite)
    await suite.stub("payments").CreateRefund(
        payments_pb2.CreateRefundRequest(order_id=payment.order_id, amount_cents=1500, request_id=uuid.uuid4().hex)
    )
    # the provider's own notification of that refund changes nothing more
    assert (await post(suite, event("charge.refunded", charge_refunded(payment, 1500)))).status_code == 200
    assert state(suite, payment.order_id) == ("PARTIALLY_REFUNDED", 4000, 1500)


async def test_unhandled_and_foreign_events_are_acknowledged_and_ignored(suite):
    body = event("customer.created", {"id": "cus_1", "object": "customer"})
    response = await post(suite, body)
    assert response.status_code == 200
    assert events(suite, event_id_of(body)) == [("customer.created", "ignored")]
    foreign = event("payment_intent.succeeded", {"id": "pi_not_ours", "object": "payment_intent", "metadata": {}})
    assert (await post(suite, foreign)).status_code == 200
    assert events(suite, event_id_of(foreign)) == [("payment_intent.succeeded", "ignored")]


async def test_event_for_an_order_not_recorded_yet_is_redelivered(suite):
    ghost = type(
        "P", (), {"provider_reference": "sbx_pi_unknown", "order_id": str(uuid.uuid4()), "amount_cents": 100}
    )()
    body = event("payment_intent.succeeded", intent(ghost))
    response = await post(suite, body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PAYMENT_NOT_READY"
    assert events(suite, event_id_of(body)) == []


async def test_malformed_events_are_400(suite):
    for body in (b"not json", b"[]", json.dumps({"id": "evt_x"}).encode()):
        response = await post(suite, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "INVALID_EVENT"


async def test_unknown_or_unconfigured_provider_is_404(suite):
    body = b"{}"
    response = await suite.http.post(
        "/api/v1/payments/webhooks/paypal", content=body, headers={"Sandbox-Signature": "t=1,v1=00"}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "UNKNOWN_PROVIDER"
    # stripe is a known provider but this suite runs the sandbox
    response = await suite.http.post(
        "/api/v1/payments/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature_header(body, "x", int(time.time()))},
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "UNKNOWN_PROVIDER"


async def test_route_is_documented(suite):
    schema = (await suite.http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/payments/webhooks/{provider}"]["post"]
    assert operation["summary"]
    assert "requestBody" in operation


# -- a late capture (issue 9, fault path 3) ---------------------------------------------------------


async def test_a_capture_after_the_charge_was_answered_declined_is_refunded_once(suite):
    """The provider declined, the order was told so (PAYMENT_FAILED), then the money is captured
    after all (a late succeeded event): payments refunds it at once, once, whatever redeliveries."""
    order_id = str(uuid.uuid4())
    stub = suite.stub("payments")
    request = payments_pb2.CreateChargeRequest(
        order_id=order_id,
        user_id="u",
        amount_cents=2600,
        currency_code="USD",
        method="card",
        token="tok_chargeDeclined",
    )
    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stub.CreateCharge(request)
    assert decode_rpc_error(declined.value).code == "PAYMENT_DECLINED"
    payment = (await stub.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))).payments[0]
    assert state(suite, order_id) == ("DECLINED", 0, 0)

    body = event("payment_intent.succeeded", intent(payment))
    response = await post(suite, body)
    assert response.status_code == 200, response.text
    assert state(suite, order_id) == ("REFUNDED", 2600, 2600)
    refunds = suite.sql(
        "payments", "SELECT request_id, status, amount_cents FROM refunds WHERE order_id = %s", (order_id,)
    )
    assert refunds == [(f"late-capture-{payment.id}", "SUCCEEDED", 2600)]
    # A redelivery and another late event change nothing and refund nothing again.
    assert (await post(suite, body)).json()["data"]["duplicate"] is True
    assert (await post(suite, event("payment_intent.succeeded", intent(payment)))).status_code == 200
    assert state(suite, order_id) == ("REFUNDED", 2600, 2600)
    assert len(suite.sql("payments", "SELECT id FROM refunds WHERE order_id = %s", (order_id,))) == 1


async def test_a_capture_of_a_charge_never_answered_declined_is_kept(suite):
    """A payment that went PENDING → SUCCEEDED, or was never answered declined, is the order's to
    keep (the order learns it on its next CreateCharge): no automatic refund."""
    payment = await charged(suite)
    response = await post(suite, event("payment_intent.succeeded", intent(payment)))
    assert response.status_code == 200
    assert state(suite, payment.order_id) == ("SUCCEEDED", 4000, 0)
    assert suite.sql("payments", "SELECT id FROM refunds WHERE order_id = %s", (payment.order_id,)) == []
