"""Every conversion of the orders service, in one place (no rules here): orders (ORM objects or lean
rows alike) → protos, the payments service's messages → the orders API's, enum names, and the
errors stored under an idempotency key ↔ ShopError."""

from __future__ import annotations

from typing import Any

import grpc

from services.orders.repository import OrderView
from shop.lib.db import to_timestamp
from shop.lib.enums import EnumNames
from shop.lib.errors import (
    _ERROR_CLASS_BY_GRPC_CODE,
    PaymentDeclined,
    ShopError,
)
from shop.lib.lines import price_line
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

# Proto enum value <-> the name the API and the tables use (ORDER_STATUS_PAID <-> "PAID").
ORDER_STATUSES = EnumNames(orders_pb2.OrderStatus)
PAYMENT_STATUSES = EnumNames(payments_pb2.PaymentStatus)
REFUND_STATUSES = EnumNames(payments_pb2.RefundStatus)


def history_proto(entry: Any) -> orders_pb2.HistoryEntry:
    return orders_pb2.HistoryEntry(
        status=ORDER_STATUSES.value(entry.status), time=to_timestamp(entry.at), note=entry.note
    )


def order_proto(view: OrderView) -> orders_pb2.Order:
    order = view.order
    address = order.shipping_address or {}
    message = orders_pb2.Order(
        id=order.id,
        number=order.number,
        user_id=order.user_id,
        status=ORDER_STATUSES.value(order.status),
        items=[orders_pb2.OrderItem(**price_line(item)) for item in view.items],
        subtotal_cents=order.subtotal_cents,
        tax_cents=order.tax_cents,
        shipping_cents=order.shipping_cents,
        total_cents=order.total_cents,
        currency_code=order.currency,
        shipping_address=orders_pb2.ShippingAddress(**{k: str(address.get(k, "")) for k in _ADDRESS_KEYS}),
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        history=[history_proto(entry) for entry in view.history],
        create_time=to_timestamp(order.created_at),
        update_time=to_timestamp(order.updated_at),
    )
    if order.payment_id or order.payment_status:
        message.payment.CopyFrom(
            orders_pb2.PaymentSummary(
                id=order.payment_id,
                status=order.payment_status,
                method=order.payment_method,
                brand=order.payment_brand,
                last4=order.payment_last4,
            )
        )
    return message


_ADDRESS_KEYS = ("first_name", "last_name", "line1", "line2", "city", "state", "postal_code", "country", "phone")


# -- the payments service's records ------------------------------------------------------------


def refund_record(refund: payments_pb2.Refund) -> orders_pb2.RefundRecord:
    return orders_pb2.RefundRecord(
        id=refund.id,
        payment_id=refund.payment_id,
        amount_cents=refund.amount_cents,
        status=REFUND_STATUSES.name(refund.status),
        reason=refund.reason,
        create_time=refund.create_time,
    )


def payment_record(payment: payments_pb2.Payment) -> orders_pb2.PaymentRecord:
    return orders_pb2.PaymentRecord(
        id=payment.id,
        status=PAYMENT_STATUSES.name(payment.status),
        method=payment.method,
        brand=payment.brand,
        last4=payment.last4,
        amount_cents=payment.amount_cents,
        captured_cents=payment.captured_cents,
        refunded_cents=payment.refunded_cents,
        currency_code=payment.currency_code,
        provider=payment.provider,
        create_time=payment.create_time,
    )


def order_payments_proto(listing: payments_pb2.ListPaymentsResponse) -> orders_pb2.ListOrderPaymentsResponse:
    return orders_pb2.ListOrderPaymentsResponse(
        payments=[payment_record(payment) for payment in listing.payments],
        refunds=[refund_record(refund) for refund in listing.refunds],
    )


# -- stored errors -----------------------------------------------------------------------------


def error_to_stored(error: ShopError) -> dict[str, Any]:
    return {
        "grpcCode": error.grpc_code.name,
        "code": error.code,
        "message": error.message,
        "details": error.details,
        "fields": error.fields,
    }


def error_from_stored(stored: dict[str, Any]) -> ShopError:
    grpc_code = grpc.StatusCode[stored.get("grpcCode", "INTERNAL")]
    cls = _ERROR_CLASS_BY_GRPC_CODE.get(grpc_code, ShopError)
    if stored.get("code") == "PAYMENT_DECLINED":
        cls = PaymentDeclined
    error = cls(
        stored.get("message", ""),
        code=stored.get("code"),
        details=stored.get("details") or {},
        fields=stored.get("fields") or {},
    )
    error.grpc_code = grpc_code
    return error
