"""Orders and payments routes (API.md "Orders and payments"): checkout, listing, lifecycle,
refunds and a Server-Sent Events stream of status changes (fed by the gateway's stream hub,
gateway/streams.py), all served by the orders service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import grpc
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from gateway.deps import ApiModel, GatewayState, Principal, current_user, get_state, ok, page, require_admin, rfc3339
from gateway.errors import ApiError
from gateway.streams import FINAL_STATUSES, End, OrderStreams, Stream
from shop.lib import idempotency
from shop.lib.enums import EnumNames
from shop.lib.errors import decode_rpc_error
from shop.orders.v1 import orders_pb2

router = APIRouter(prefix="/api/v1", tags=["orders"])

REPLAYED_HEADER = idempotency.REPLAYED_HEADER
ORDER_STATUSES = EnumNames(orders_pb2.OrderStatus)
STATUSES = ORDER_STATUSES.names
# An SSE comment line this often while nothing happens keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0


# -- bodies ------------------------------------------------------------------------------------

class AddressBody(ApiModel):
    first_name: str = Field(max_length=200)
    last_name: str = Field(max_length=200)
    line1: str = Field(max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str = Field(max_length=200)
    state: str | None = Field(None, max_length=200)
    postal_code: str = Field(max_length=200)
    country: str = Field(description="ISO 3166-1 alpha-2", max_length=200)
    phone: str | None = Field(None, max_length=32)


class PaymentBody(ApiModel):
    method: Literal["card"] = "card"
    token: str = Field(min_length=1, max_length=255, description="a provider token, e.g. tok_visa in the sandbox")


class CreateOrderBody(ApiModel):
    shipping_address: AddressBody | None = None
    address_id: str | None = Field(None, description="one of the user's saved addresses instead of shippingAddress")
    payment: PaymentBody


class CancelBody(ApiModel):
    reason: str | None = Field(None, max_length=300)


class StatusBody(ApiModel):
    status: Literal["PROCESSING", "SHIPPED", "DELIVERED"]
    carrier: str | None = Field(None, max_length=100)
    tracking_number: str | None = Field(None, max_length=100)


class RefundBody(ApiModel):
    amount_cents: int | None = Field(None, gt=0, description="default: what remains captured")
    reason: str = Field("", max_length=500)


# -- shaping -----------------------------------------------------------------------------------

def status_name(value: int) -> str:
    return ORDER_STATUSES.name(value)


def history_json(entry: orders_pb2.HistoryEntry) -> dict[str, Any]:
    return {"status": status_name(entry.status), "at": rfc3339(entry.time), "note": entry.note or None}


def order_json(order: orders_pb2.Order) -> dict[str, Any]:
    address = order.shipping_address
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
        "items": [
            {
                "productId": item.product_id,
                "sku": item.sku,
                "name": item.name,
                "unitPriceCents": item.unit_price_cents,
                "quantity": item.quantity,
                "lineTotalCents": item.line_total_cents,
            }
            for item in order.items
        ],
        "subtotalCents": order.subtotal_cents,
        "taxCents": order.tax_cents,
        "shippingCents": order.shipping_cents,
        "totalCents": order.total_cents,
        "currency": order.currency_code,
        "shippingAddress": {
            "firstName": address.first_name,
            "lastName": address.last_name,
            "line1": address.line1,
            "line2": address.line2 or None,
            "city": address.city,
            "state": address.state or None,
            "postalCode": address.postal_code,
            "country": address.country,
            "phone": address.phone or None,
        },
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


def require_key(key: str | None) -> str:
    """The Idempotency-Key (one rule: shop.lib.idempotency). The request's fingerprint is the
    orders service's to compute, from the request message, so a key gets one whoever calls."""
    return idempotency.clean_key(key, required=True) or ""


async def idempotent_call(call) -> tuple[Any, dict[str, str]]:
    """Awaits an idempotent RPC; a stored error replayed by the service keeps the replay header."""
    try:
        return await call, {}
    except grpc.aio.AioRpcError as exc:
        metadata = exc.initial_metadata() or ()
        replayed = idempotency.is_replayed(metadata)
        error = ApiError.from_remote(decode_rpc_error(exc))
        if replayed:
            error.headers[REPLAYED_HEADER] = "true"
        raise error from None


_KEY_HEADER = Header(None, alias="Idempotency-Key", description="required; a replay returns the first response")


# -- routes ------------------------------------------------------------------------------------

@router.post(
    "/orders",
    status_code=201,
    summary="Check out the cart",
    description="Turns the user's cart into a PAID order (charged, stock committed, cart cleared). "
    "`Idempotency-Key` is required; a replay returns the first response with `Idempotent-Replayed: true`. "
    "Errors: 400 IDEMPOTENCY_KEY_REQUIRED / VALIDATION_ERROR, 402 PAYMENT_DECLINED (the order is kept as "
    "PAYMENT_FAILED), 404 ADDRESS_NOT_FOUND, 409 CART_EMPTY / INSUFFICIENT_STOCK (details.productIds) / "
    "PRODUCT_UNAVAILABLE / REQUEST_IN_PROGRESS, 422 IDEMPOTENCY_KEY_REUSED.",
)
async def create_order(
    body: CreateOrderBody,
    idempotency_key: str | None = _KEY_HEADER,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    key = require_key(idempotency_key)
    if (body.shipping_address is None) == (body.address_id is None):
        raise ApiError.validation({"shippingAddress": ["give either shippingAddress or addressId"]})
    request = orders_pb2.CreateOrderRequest(
        request_id=key,
        payment_method=body.payment.method,
        payment_token=body.payment.token,
    )
    if body.shipping_address is not None:
        a = body.shipping_address
        request.shipping_address.CopyFrom(
            orders_pb2.ShippingAddress(
                first_name=a.first_name, last_name=a.last_name, line1=a.line1, line2=a.line2 or "",
                city=a.city, state=a.state or "", postal_code=a.postal_code, country=a.country, phone=a.phone or "",
            )
        )
    else:
        request.address_id = body.address_id or ""
    response, headers = await idempotent_call(
        state.clients.orders.CreateOrder(request, metadata=principal.metadata, timeout=30)
    )
    if response.replayed:
        headers[REPLAYED_HEADER] = "true"
    return ok(order_json(response.order), 201, headers=headers)


@router.get(
    "/orders",
    summary="List orders",
    description="The user's own orders, newest first; admins see every order and may filter by userId.",
)
async def list_orders(
    status: Literal[STATUSES] | None = Query(None, description="only orders in this status"),  # type: ignore[valid-type]
    user_id: str | None = Query(None, alias="userId", description="admins only: one user's orders"),
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken"),
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    request = orders_pb2.ListOrdersRequest(page_size=page_size, page_token=page_token, user_id=user_id or "")
    if status:
        request.status = ORDER_STATUSES.value(status)
    response = await state.clients.orders.ListOrders(request, metadata=principal.metadata)
    return page([order_json(order) for order in response.orders], response.next_page_token, response.total_size)


@router.get("/orders/{order_id}", summary="Get an order", description="Owner or admin; else 404 ORDER_NOT_FOUND.")
async def get_order(
    order_id: str, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> JSONResponse:
    response = await state.clients.orders.GetOrder(
        orders_pb2.GetOrderRequest(order_id=order_id), metadata=principal.metadata
    )
    return ok(order_json(response.order))


@router.post(
    "/orders/{order_id}/cancel",
    summary="Cancel an order",
    description="Owner or admin; from PENDING, PAID or PROCESSING only (else 409 ORDER_NOT_CANCELLABLE). "
    "Refunds what was captured and puts the stock back. While the order's payment outcome is not known "
    "yet (a charge may be under way): 409 PAYMENT_IN_PROGRESS with Retry-After.",
)
async def cancel_order(
    order_id: str,
    body: CancelBody | None = None,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    response = await state.clients.orders.CancelOrder(
        orders_pb2.CancelOrderRequest(order_id=order_id, reason=(body.reason if body else None) or ""),
        metadata=principal.metadata,
        timeout=30,
    )
    await state.shared.order_changed(order_id)
    return ok(order_json(response.order))


@router.patch(
    "/orders/{order_id}/status",
    summary="Move an order along fulfilment",
    description="Admin: PAID→PROCESSING→SHIPPED→DELIVERED only (else 409 INVALID_TRANSITION); "
    "SHIPPED needs carrier and trackingNumber (400).",
)
async def update_order_status(
    order_id: str,
    body: StatusBody,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    response = await state.clients.orders.UpdateOrderStatus(
        orders_pb2.UpdateOrderStatusRequest(
            order_id=order_id,
            status=ORDER_STATUSES.value(body.status),
            carrier=body.carrier or "",
            tracking_number=body.tracking_number or "",
        ),
        metadata=principal.metadata,
    )
    await state.shared.order_changed(order_id)
    return ok(order_json(response.order))


@router.get(
    "/orders/{order_id}/events",
    summary="Stream an order's status changes (Server-Sent Events)",
    description="`text/event-stream`: first the current status, then one `event: status` per change "
    "(`data` = {status, at, note, order}); ends when the order reaches a final status. Owner or admin. "
    "A stream lasts at most SHOP_SSE_MAX_LIFETIME_SECONDS and never past its access token (reconnect "
    "with a fresh one); a revoked session ends it with `event: error` `{\"code\": \"UNAUTHENTICATED\"}`. "
    "Too many streams of the user: 429 TOO_MANY_STREAMS; of the gateway: 503 STREAMS_UNAVAILABLE.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def order_events(
    order_id: str,
    request: Request,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> StreamingResponse:
    hub = state.streams
    expiry = principal.caller.claims.get("exp")
    stream = hub.open(order_id, principal.user_id, principal.caller.session_id or "", principal.token,
                      float(expiry) if isinstance(expiry, int | float) else None)
    try:
        # The caller's own read: 404 for anyone but the owner or an admin, a JSON error, not a stream.
        first = await state.clients.orders.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), metadata=principal.metadata
        )
    except BaseException:
        hub.close(stream)
        raise
    return StreamingResponse(
        _events(first.order, stream, hub, request), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _frame(entry: orders_pb2.HistoryEntry, order: orders_pb2.Order) -> bytes:
    data = {**history_json(entry), "order": order_json(order)}
    return f"event: status\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(order: orders_pb2.Order, stream: Stream, hub: OrderStreams, request: Request):
    """The current status, then each new history entry the hub's reads bring, until a final status,
    the stream's deadline, the session's revocation or the client leaving."""
    try:
        current = order.history[-1] if order.history else orders_pb2.HistoryEntry(
            status=order.status, time=order.update_time
        )
        yield _frame(current, order)
        sent = len(order.history)
        while order.status not in FINAL_STATUSES:
            timeout = min(KEEPALIVE_SECONDS, stream.deadline - time.monotonic())
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(stream.queue.get(), timeout)
            except TimeoutError:
                if await request.is_disconnected():
                    break
                if time.monotonic() < stream.deadline:
                    yield b": keep-alive\n\n"
                continue
            if isinstance(item, End):
                if item.code:
                    yield f"event: error\ndata: {json.dumps({'code': item.code})}\n\n".encode()
                break
            order = item
            for entry in order.history[sent:]:
                yield _frame(entry, order)
            sent = max(sent, len(order.history))
    finally:
        hub.close(stream)


@router.get(
    "/orders/{order_id}/payments",
    summary="Payments and refunds of an order",
    description="Owner or admin: `{payments: [...], refunds: [...]}` from the payments service.",
)
async def order_payments(
    order_id: str, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> JSONResponse:
    response = await state.clients.orders.ListOrderPayments(
        orders_pb2.ListOrderPaymentsRequest(order_id=order_id), metadata=principal.metadata
    )
    return ok(
        {
            "payments": [payment_json(payment) for payment in response.payments],
            "refunds": [refund_json(refund) for refund in response.refunds],
        }
    )


@router.post(
    "/orders/{order_id}/refunds",
    status_code=201,
    summary="Refund an order",
    description="Admin; `Idempotency-Key` required. `{amountCents?, reason}` (default: what remains) → 201 "
    "`{refund, order}`; more than remains → 409 REFUND_EXCEEDS_CAPTURED; a full refund makes the order "
    "REFUNDED and restocks it if it has not shipped.",
)
async def create_refund(
    order_id: str,
    body: RefundBody,
    idempotency_key: str | None = _KEY_HEADER,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    key = require_key(idempotency_key)
    request = orders_pb2.CreateRefundRequest(
        order_id=order_id,
        amount_cents=body.amount_cents or 0,
        reason=body.reason,
        request_id=key,
    )
    response, headers = await idempotent_call(
        state.clients.orders.CreateRefund(request, metadata=principal.metadata, timeout=30)
    )
    if response.replayed:
        headers[REPLAYED_HEADER] = "true"
    await state.shared.order_changed(order_id)
    return ok({"refund": refund_json(response.refund), "order": order_json(response.order)}, 201, headers=headers)
