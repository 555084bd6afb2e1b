"""Payment and refund rows → payments protos, in one place (ORM objects and lean-path rows alike:
both have the table's columns as attributes). No rules here."""

from __future__ import annotations

from typing import Any

from shop.lib.db import to_timestamp
from shop.lib.enums import EnumNames
from shop.payments.v1 import payments_pb2

# Proto enum value <-> the status text stored in the tables (PAYMENT_STATUS_SUCCEEDED <-> "SUCCEEDED").
PAYMENT_STATUSES = EnumNames(payments_pb2.PaymentStatus)
REFUND_STATUSES = EnumNames(payments_pb2.RefundStatus)


def payment_to_proto(payment: Any) -> payments_pb2.Payment:
    return payments_pb2.Payment(
        id=payment.id,
        order_id=payment.order_id,
        status=PAYMENT_STATUSES.value(payment.status),
        method=payment.method,
        brand=payment.brand,
        last4=payment.last4,
        amount_cents=payment.amount_cents,
        captured_cents=payment.captured_cents,
        refunded_cents=payment.refunded_cents,
        currency_code=payment.currency_code,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        decline_code=payment.decline_code,
        create_time=to_timestamp(payment.created_at),
        update_time=to_timestamp(payment.updated_at),
    )


def refund_to_proto(refund: Any) -> payments_pb2.Refund:
    return payments_pb2.Refund(
        id=refund.id,
        payment_id=refund.payment_id,
        order_id=refund.order_id,
        amount_cents=refund.amount_cents,
        status=REFUND_STATUSES.value(refund.status),
        reason=refund.reason,
        create_time=to_timestamp(refund.created_at),
        provider_reference=refund.provider_reference,
        request_id=refund.request_id,
    )
