"""Orders and payments (API.md "Orders and payments"): the Order, payment and refund shapes, built
here from their protos, the order event of the SSE stream, and the orders routes' request bodies.
Fields of capabilities not scheduled yet (billingAddress, customerNote, coupons, shipments,
messages, REQUIRES_ACTION, guests) are left out until their issue."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from gateway.schemas.common import ApiModel, DateTime, OutModel, Uuid, line_json, rfc3339
from gateway.schemas.users import Address, AddressInput, address_fields, address_json
from shop.lib.enums import EnumNames
from shop.orders.v1 import orders_pb2

ORDER_STATUSES = EnumNames(orders_pb2.OrderStatus)
OrderStatus = Literal[
    "PENDING", "PAID", "PAYMENT_FAILED", "PROCESSING", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"
]
assert set(OrderStatus.__args__) == set(ORDER_STATUSES.names), "the proto's statuses changed"  # type: ignore[attr-defined]


# -- responses ------------------------------------------------------------------------------------


class OrderItem(OutModel):
    product_id: Uuid
    sku: str
    name: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int


class OrderPayment(OutModel):
    id: str | None
    status: str | None
    method: str | None
    brand: str | None
    last4: str | None


class HistoryEntry(OutModel):
    status: OrderStatus
    at: DateTime | None
    note: str | None


class Order(OutModel):
    id: Uuid
    number: str = Field(description='"ORD-YYYYMMDD-" and 6 characters.')
    user_id: Uuid
    status: OrderStatus
    items: list[OrderItem]
    subtotal_cents: int
    tax_cents: int
    shipping_cents: int
    total_cents: int
    currency: str
    shipping_address: Address
    payment: OrderPayment | None
    carrier: str | None
    tracking_number: str | None
    history: list[HistoryEntry]
    created_at: DateTime
    updated_at: DateTime


class Payment(OutModel):
    id: str
    status: str
    method: str
    brand: str | None
    last4: str | None
    amount_cents: int
    captured_cents: int
    refunded_cents: int
    currency: str
    provider: str
    created_at: DateTime | None


class Refund(OutModel):
    id: str
    payment_id: str
    amount_cents: int
    status: str
    reason: str | None
    created_at: DateTime | None


class OrderPayments(OutModel):
    payments: list[Payment]
    refunds: list[Refund]


class RefundResult(OutModel):
    refund: Refund
    order: Order


class OrderEvent(OutModel):
    """The `data` of an `event: status` on the order's event stream."""

    status: OrderStatus
    at: DateTime | None
    note: str | None
    order: Order


def status_name(value: int) -> str:
    return ORDER_STATUSES.name(value)


def history_json(entry: orders_pb2.HistoryEntry) -> dict[str, Any]:
    return {"status": status_name(entry.status), "at": rfc3339(entry.time), "note": entry.note or None}


def order_json(order: orders_pb2.Order) -> dict[str, Any]:
    payment = None
    if order.HasField("payment"):
        payment = {
            "id": order.payment.id or None,
            "status": order.payment.status or None,
            "method": order.payment.method or None,
            "brand": order.payment.brand or None,
            "last4": order.payment.last4 or None,
        }
    return {
        "id": order.id,
        "number": order.number,
        "userId": order.user_id,
        "status": status_name(order.status),
        "items": [line_json(item) for item in order.items],
        "subtotalCents": order.subtotal_cents,
        "taxCents": order.tax_cents,
        "shippingCents": order.shipping_cents,
        "totalCents": order.total_cents,
        "currency": order.currency_code,
        "shippingAddress": address_json(order.shipping_address),
        "payment": payment,
        "carrier": order.carrier or None,
        "trackingNumber": order.tracking_number or None,
        "history": [history_json(entry) for entry in order.history],
        "createdAt": rfc3339(order.create_time),
        "updatedAt": rfc3339(order.update_time),
    }


def refund_json(refund: orders_pb2.RefundRecord) -> dict[str, Any]:
    return {
        "id": refund.id,
        "paymentId": refund.payment_id,
        "amountCents": refund.amount_cents,
        "status": refund.status,
        "reason": refund.reason or None,
        "createdAt": rfc3339(refund.create_time),
    }


def payment_json(payment: orders_pb2.PaymentRecord) -> dict[str, Any]:
    return {
        "id": payment.id,
        "status": payment.status,
        "method": payment.method,
        "brand": payment.brand or None,
        "last4": payment.last4 or None,
        "amountCents": payment.amount_cents,
        "capturedCents": payment.captured_cents,
        "refundedCents": payment.refunded_cents,
        "currency": payment.currency_code,
        "provider": payment.provider,
        "createdAt": rfc3339(payment.create_time),
    }


def shipping_address_proto(address: AddressInput) -> orders_pb2.ShippingAddress:
    """An address as sent (new or saved): its label and read-only fields mean nothing on an order."""
    return orders_pb2.ShippingAddress(**address_fields(address))


# -- request bodies -------------------------------------------------------------------------------


class PaymentBody(ApiModel):
    method: Literal["card"] = "card"
    token: str = Field(min_length=1, max_length=255, description="A provider token, e.g. tok_visa in the sandbox.")


class CreateOrderBody(ApiModel):
    """Exactly one of `shippingAddress` (a new address, or a saved one as returned) and `addressId`."""

    shipping_address: AddressInput | None = None
    address_id: str | None = Field(None, description="One of the user's saved addresses instead of shippingAddress.")
    payment: PaymentBody


class CancelBody(ApiModel):
    reason: str | None = Field(None, max_length=300)


# Any character Python's str.strip() keeps: the orders service refuses a carrier or tracking number
# that strips to nothing (services/orders/domain.py), so the schema says "not blank" in its terms
# (JSON Schema's \S would disagree on a few, e.g. U+001C and U+FEFF).
_NOT_BLANK = "[^" + "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace()) + "]"
_SHIPPED_NEEDS_TRACKING: JsonDict = {
    "if": {"properties": {"status": {"const": "SHIPPED"}}, "required": ["status"]},
    "then": {
        "required": ["carrier", "trackingNumber"],
        "properties": {
            "carrier": {"type": "string", "pattern": _NOT_BLANK},
            "trackingNumber": {"type": "string", "pattern": _NOT_BLANK},
        },
    },
}


class StatusBody(ApiModel):
    model_config = ConfigDict(json_schema_extra=_SHIPPED_NEEDS_TRACKING)

    status: Literal["PROCESSING", "SHIPPED", "DELIVERED"]
    carrier: str | None = Field(None, max_length=100, description="Required for SHIPPED.")
    tracking_number: str | None = Field(None, max_length=100, description="Required for SHIPPED.")


class RefundBody(ApiModel):
    amount_cents: int | None = Field(
        None,
        gt=0,
        le=2**63 - 1,
        description="Default: what remains captured.",
        json_schema_extra={"maximum": 2**53 - 1},
    )
    reason: str = Field("", max_length=500)
