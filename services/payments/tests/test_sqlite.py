"""The embedded SQLite path (`make run`): the same handlers on a migrated SQLite database."""

from __future__ import annotations

import json
import time

import pytest

from services.payments.config import PaymentsSettings
from services.payments.domain import signature_header
from services.payments.server import MIGRATIONS_DIR, Runtime
from services.payments.servicer import PaymentsServicer
from shop.lib.context import Caller, caller_var
from shop.lib.errors import Conflict, PaymentDeclined
from shop.lib.migrations import upgrade_async
from shop.payments.v1 import payments_pb2


@pytest.fixture
async def servicer(tmp_path):
    url = f"sqlite:///{tmp_path}/payments.db"
    await upgrade_async(MIGRATIONS_DIR, url)
    runtime = Runtime(PaymentsSettings(database_url=url, env="test"))
    token = caller_var.set(Caller(service="orders"))
    yield PaymentsServicer(runtime)
    caller_var.reset(token)
    await runtime.db.dispose()


async def test_charge_refund_and_webhook_on_sqlite(servicer):
    request = payments_pb2.CreateChargeRequest(
        order_id="o-1", user_id="u", amount_cents=1000, currency_code="USD", token="tok_visa"
    )
    first = (await servicer.CreateCharge(request, None)).payment
    again = (await servicer.CreateCharge(request, None)).payment
    assert first == again and first.status == payments_pb2.PAYMENT_STATUS_SUCCEEDED
    with pytest.raises(PaymentDeclined):
        await servicer.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id="o-2", amount_cents=100, currency_code="USD", token="tok_chargeDeclinedInsufficientFunds"
            ),
            None,
        )

    refund = await servicer.CreateRefund(
        payments_pb2.CreateRefundRequest(order_id="o-1", amount_cents=400, request_id="r-1"), None
    )
    assert refund.payment.status == payments_pb2.PAYMENT_STATUS_PARTIALLY_REFUNDED
    with pytest.raises(Conflict):
        await servicer.CreateRefund(
            payments_pb2.CreateRefundRequest(order_id="o-1", amount_cents=601, request_id="r-2"), None
        )

    body = json.dumps(
        {
            "id": "evt_1",
            "type": "charge.refunded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "payment_intent": first.provider_reference,
                    "amount_captured": 1000,
                    "amount_refunded": 1000,
                    "metadata": {"order_id": "o-1"},
                }
            },
        }
    ).encode()
    signature = signature_header(body, servicer.runtime.settings.sandbox_webhook_secret, int(time.time()))
    webhook = payments_pb2.HandleWebhookRequest(provider="sandbox", payload=body, signature=signature)
    gateway = caller_var.set(Caller(service="gateway"))  # webhooks arrive through the gateway
    assert not (await servicer.HandleWebhook(webhook, None)).duplicate
    assert (await servicer.HandleWebhook(webhook, None)).duplicate
    caller_var.reset(gateway)
    listed = await servicer.ListPayments(payments_pb2.ListPaymentsRequest(order_id="o-1"), None)
    assert listed.payments[0].status == payments_pb2.PAYMENT_STATUS_REFUNDED
    assert [r.amount_cents for r in listed.refunds] == [400]


async def test_refund_of_a_payment_made_with_another_provider_is_refused(servicer):
    from services.payments.providers.stripe import StripeProvider

    await servicer.CreateCharge(
        payments_pb2.CreateChargeRequest(order_id="o-9", amount_cents=500, currency_code="USD", token="tok_visa"), None
    )
    servicer.runtime.provider = StripeProvider(api_key="sk_test_x", webhook_secret="", api_base="http://127.0.0.1:9")
    with pytest.raises(Conflict) as info:
        await servicer.CreateRefund(payments_pb2.CreateRefundRequest(order_id="o-9", request_id="r-9"), None)
    assert info.value.code == "PROVIDER_MISMATCH"
    listed = await servicer.ListPayments(payments_pb2.ListPaymentsRequest(order_id="o-9"), None)
    assert listed.payments[0].refunded_cents == 0 and list(listed.refunds) == []


async def test_lean_charge_path_on_sqlite(servicer):
    """CreateCharge's lean SQL on SQLite: a charge, a repeat answering the same payment, a repeat
    with another amount (CHARGE_MISMATCH), an invalid token that leaves no row, a decline recorded."""
    from shop.lib.errors import InvalidArgument

    request = payments_pb2.CreateChargeRequest(
        order_id="o-lean", user_id="u-1", amount_cents=2500, currency_code="usd", token="tok_visa"
    )
    first = (await servicer.CreateCharge(request, None)).payment
    assert first.status == payments_pb2.PAYMENT_STATUS_SUCCEEDED
    assert (first.amount_cents, first.captured_cents, first.currency_code) == (2500, 2500, "USD")
    assert first.brand and first.last4 and first.provider_reference and first.create_time.seconds > 0
    again = (await servicer.CreateCharge(request, None)).payment
    assert again == first
    with pytest.raises(Conflict) as info:
        await servicer.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id="o-lean", amount_cents=2600, currency_code="USD", token="tok_visa"
            ),
            None,
        )
    assert info.value.code == "CHARGE_MISMATCH" and info.value.details == {"paymentId": first.id}

    with pytest.raises(InvalidArgument):
        await servicer.CreateCharge(
            payments_pb2.CreateChargeRequest(
                order_id="o-bad", amount_cents=100, currency_code="USD", token="tok_unknown"
            ),
            None,
        )
    listed = await servicer.ListPayments(payments_pb2.ListPaymentsRequest(order_id="o-bad"), None)
    assert list(listed.payments) == []

    declined = payments_pb2.CreateChargeRequest(
        order_id="o-no", amount_cents=100, currency_code="USD", token="tok_chargeDeclined"
    )
    for _ in range(2):  # a decline is final for the order
        with pytest.raises(PaymentDeclined):
            await servicer.CreateCharge(declined, None)
    listed = await servicer.ListPayments(payments_pb2.ListPaymentsRequest(order_id="o-no"), None)
    assert listed.payments[0].status == payments_pb2.PAYMENT_STATUS_DECLINED
    assert listed.payments[0].decline_code == "card_declined"
