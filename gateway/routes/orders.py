"""Orders and payments routes (API.md "Orders and payments"): checkout, listing, lifecycle,
refunds and a Server-Sent Events stream of status changes (fed by the gateway's stream hub,
gateway/streams.py), all served by the orders service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from fastapi import APIRouter, Depends, Header, Path, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.deps import GatewayState, Principal, current_user, get_state, require_admin
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.schemas.common import IDEMPOTENCY_KEY_RULE, data, envelope, page, page_of, render
from gateway.schemas.orders import (
    ORDER_STATUSES,
    CancelBody,
    CreateOrderBody,
    Order,
    OrderEvent,
    OrderPayments,
    OrderStatus,
    RefundBody,
    RefundResult,
    StatusBody,
    history_json,
    order_json,
    payment_json,
    refund_json,
    shipping_address_proto,
)
from gateway.streams import FINAL_STATUSES, End, OrderStreams, Stream
from shop.lib import idempotency
from shop.lib.errors import decode_rpc_error
from shop.orders.v1 import orders_pb2

router = APIRouter(prefix="/api/v1", tags=["orders"])

REPLAYED_HEADER = idempotency.REPLAYED_HEADER
# An SSE comment line this often while nothing happens keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0
# How long a client waits before reconnecting (the SSE `retry` field).
RETRY_MILLISECONDS = 3000
OrderEnvelope = envelope(Order)
OrderId = Path(alias="orderId", description="The order's id (UUID).")
NOT_FOUND = "ORDER_NOT_FOUND (also another user's order)"
REPLAYED_RESPONSE = {
    "headers": {
        REPLAYED_HEADER: {
            "description": "true: a replay of the first request with this Idempotency-Key answered its first response.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
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


# Required: documented so, and refused as 400 IDEMPOTENCY_KEY_REQUIRED (not a generic validation error) when missing.
_KEY_HEADER = Header(
    None,
    alias="Idempotency-Key",
    description="Required (1..128 printable ASCII characters); a replay returns the first response.",
    json_schema_extra={"x-required": True, **IDEMPOTENCY_KEY_RULE},
)


# -- routes ------------------------------------------------------------------------------------


@router.post(
    "/orders",
    operation_id="orders-create",
    status_code=201,
    summary="Check out the cart",
    description="Turns the user's cart into a PAID order (charged, stock committed, cart cleared). "
    "`Idempotency-Key` is required; a replay returns the first response with `Idempotent-Replayed: true`. "
    "`shippingAddress` may be a saved address exactly as `GET /users/me/addresses` returned it.",
    response_model=OrderEnvelope,
    responses={
        201: REPLAYED_RESPONSE,
        **errors(
            402,
            404,
            409,
            422,
            e400="IDEMPOTENCY_KEY_REQUIRED, INVALID_PAYMENT_TOKEN or VALIDATION_ERROR",
            e402="PAYMENT_DECLINED: the order is kept as PAYMENT_FAILED, the cart is kept",
            e404="ADDRESS_NOT_FOUND",
            e409="CART_EMPTY, INSUFFICIENT_STOCK (details.productIds), PRODUCT_UNAVAILABLE or REQUEST_IN_PROGRESS",
        ),
    },
)
async def create_order(
    body: CreateOrderBody,
    response: Response,
    idempotency_key: str | None = _KEY_HEADER,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
):
    key = require_key(idempotency_key)
    if (body.shipping_address is None) == (body.address_id is None):
        raise ApiError.validation({"shippingAddress": ["give either shippingAddress or addressId"]})
    request = orders_pb2.CreateOrderRequest(
        request_id=key,
        payment_method=body.payment.method,
        payment_token=body.payment.token,
    )
    if body.shipping_address is not None:
        request.shipping_address.CopyFrom(shipping_address_proto(body.shipping_address))
    else:
        request.address_id = body.address_id or ""
    result, headers = await idempotent_call(
        state.clients.orders.CreateOrder(request, metadata=principal.metadata, timeout=30)
    )
    if result.replayed:
        headers[REPLAYED_HEADER] = "true"
    response.headers.update(headers)
    return data(order_json(result.order))


@router.get(
    "/orders",
    operation_id="orders-list",
    summary="List orders",
    description="The user's own orders, newest first; admins see every order and may filter by userId.",
    response_model=page_of(Order),
    responses=errors(400, e400="VALIDATION_ERROR or INVALID_PAGE_TOKEN"),
)
async def list_orders(
    status: OrderStatus | None = Query(None, description="only orders in this status"),
    user_id: str | None = Query(None, alias="userId", description="admins only: one user's orders"),
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken"),
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
):
    request = orders_pb2.ListOrdersRequest(page_size=page_size, page_token=page_token, user_id=user_id or "")
    if status:
        request.status = ORDER_STATUSES.value(status)
    response = await state.clients.orders.ListOrders(request, metadata=principal.metadata)
    return page([order_json(order) for order in response.orders], response.next_page_token, response.total_size)


@router.get(
    "/orders/{orderId}",
    operation_id="orders-get",
    summary="Get an order",
    description="Owner or admin; else 404 ORDER_NOT_FOUND.",
    response_model=OrderEnvelope,
    responses=errors(404, e404=NOT_FOUND),
)
async def get_order(
    order_id: str = OrderId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    response = await state.clients.orders.GetOrder(
        orders_pb2.GetOrderRequest(order_id=order_id), metadata=principal.metadata
    )
    return data(order_json(response.order))


@router.post(
    "/orders/{orderId}/cancel",
    operation_id="orders-cancel",
    summary="Cancel an order",
    description="Owner or admin; from PENDING, PAID or PROCESSING only (else 409 ORDER_NOT_CANCELLABLE). "
    "Refunds what was captured and puts the stock back. While the order's payment outcome is not known "
    "yet (a charge may be under way): 409 PAYMENT_IN_PROGRESS with Retry-After.",
    response_model=OrderEnvelope,
    responses=errors(404, 409, e404=NOT_FOUND, e409="ORDER_NOT_CANCELLABLE or PAYMENT_IN_PROGRESS (Retry-After)"),
)
async def cancel_order(
    order_id: str = OrderId,
    body: CancelBody | None = None,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
):
    response = await state.clients.orders.CancelOrder(
        orders_pb2.CancelOrderRequest(order_id=order_id, reason=(body.reason if body else None) or ""),
        metadata=principal.metadata,
        timeout=30,
    )
    await state.shared.order_changed(order_id)
    return data(order_json(response.order))


@router.patch(
    "/orders/{orderId}/status",
    operation_id="orders-update-status",
    summary="Move an order along fulfilment",
    description="Admin: PAID→PROCESSING→SHIPPED→DELIVERED only (else 409 INVALID_TRANSITION); "
    "SHIPPED needs carrier and trackingNumber (400).",
    response_model=OrderEnvelope,
    responses=errors(403, 404, 409, e404=NOT_FOUND, e409="INVALID_TRANSITION"),
)
async def update_order_status(
    body: StatusBody,
    order_id: str = OrderId,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
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
    return data(order_json(response.order))


SSE_EVENT = {
    "type": "object",
    "description": 'One event. `data` is JSON: an OrderEvent for `status`, `{"code"}` for `error`.',
    "properties": {
        "event": {"type": "string", "enum": ["status", "error"]},
        "id": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["data"],
}


@router.get(
    "/orders/{orderId}/events",
    operation_id="orders-events",
    summary="Stream an order's status changes (Server-Sent Events)",
    description="`text/event-stream`: one `event: status` per status change, its `id` the change's position in "
    "the order's history and its `data` an OrderEvent ({status, at, note, order}). Without `Last-Event-ID` the "
    "stream starts with the current status; with it (a reconnect), with every change after that id. The first "
    "frame carries `retry` (ms). `: keep-alive` comments while nothing happens. Ends when the order reaches a "
    "final status. Owner or admin. A stream lasts at most SHOP_SSE_MAX_LIFETIME_SECONDS and never past its "
    "access token (reconnect with a fresh one and Last-Event-ID); a revoked session ends it with "
    '`event: error` `{"code": "UNAUTHENTICATED"}`.',
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "The event stream; each `data` is an OrderEvent.",
            # OpenAPI 3.1 (before `itemSchema`): the schema of a text/event-stream is one event's.
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        **errors(
            404,
            429,
            503,
            e404=NOT_FOUND,
            e429="TOO_MANY_STREAMS of the user (Retry-After)",
            e503="STREAMS_UNAVAILABLE: too many streams on the gateway (Retry-After)",
        ),
    },
)
async def order_events(
    order_id: str = OrderId,
    last_event_id: str | None = Header(
        None, alias="Last-Event-ID", description="The id of the last event received: the stream resumes after it."
    ),
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> EventSourceResponse:
    hub = state.streams
    expiry = principal.caller.claims.get("exp")
    stream = hub.open(
        order_id,
        principal.user_id,
        principal.caller.session_id or "",
        principal.token,
        float(expiry) if isinstance(expiry, int | float) else None,
    )
    try:
        # The caller's own read: 404 for anyone but the owner or an admin, a JSON error, not a stream.
        first = await state.clients.orders.GetOrder(
            orders_pb2.GetOrderRequest(order_id=order_id), metadata=principal.metadata
        )
    except BaseException:
        hub.close(stream)
        raise
    return EventSourceResponse(
        _events(first.order, stream, hub, _resume_from(last_event_id)),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        ping=KEEPALIVE_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
        sep="\n",
    )


def _resume_from(last_event_id: str | None) -> int | None:
    """How many history entries the client has (Last-Event-ID), or None: start from the current status."""
    if last_event_id is None or not last_event_id.strip().isdigit():
        return None
    return int(last_event_id.strip())


def _status_event(position: int | None, entry: orders_pb2.HistoryEntry, order: orders_pb2.Order) -> ServerSentEvent:
    """An `event: status` whose data is a validated OrderEvent; its id the entry's 1-based position."""
    body = render(OrderEvent, {**history_json(entry), "order": order_json(order)})
    return ServerSentEvent(body.decode(), event="status", id=None if position is None else str(position), sep="\n")


def _first_events(order: orders_pb2.Order, resume: int | None) -> list[ServerSentEvent]:
    history = order.history
    if resume is not None and resume <= len(history):
        events = [_status_event(i + 1, history[i], order) for i in range(resume, len(history))]
    elif history:
        events = [_status_event(len(history), history[-1], order)]
    else:
        events = [_status_event(None, orders_pb2.HistoryEntry(status=order.status, time=order.update_time), order)]
    if events:
        events[0].retry = RETRY_MILLISECONDS
    else:  # a reconnect that missed nothing: still tell the client how long to wait next time
        events = [ServerSentEvent(comment="resumed", retry=RETRY_MILLISECONDS, sep="\n")]
    return events


async def _events(order: orders_pb2.Order, stream: Stream, hub: OrderStreams, resume: int | None):
    """The current status (or what a reconnect missed), then each new history entry the hub's
    reads bring, until a final status, the stream's deadline or the session's revocation.
    sse-starlette sends the pings and cancels this generator when the client leaves."""
    try:
        for event in _first_events(order, resume):
            yield event
        sent = max(len(order.history), resume or 0)
        while order.status not in FINAL_STATUSES:
            timeout = stream.deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(stream.queue.get(), timeout)
            except TimeoutError:
                break
            if isinstance(item, End):
                if item.code:
                    yield ServerSentEvent(json.dumps({"code": item.code}), event="error", sep="\n")
                break
            order = item
            for position in range(sent, len(order.history)):
                yield _status_event(position + 1, order.history[position], order)
            sent = max(sent, len(order.history))
    finally:
        hub.close(stream)


@router.get(
    "/orders/{orderId}/payments",
    operation_id="orders-list-payments",
    summary="Payments and refunds of an order",
    description="Owner or admin: `{payments: [...], refunds: [...]}` from the payments service.",
    response_model=envelope(OrderPayments),
    responses=errors(404, e404=NOT_FOUND),
)
async def order_payments(
    order_id: str = OrderId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    response = await state.clients.orders.ListOrderPayments(
        orders_pb2.ListOrderPaymentsRequest(order_id=order_id), metadata=principal.metadata
    )
    return data(
        {
            "payments": [payment_json(payment) for payment in response.payments],
            "refunds": [refund_json(refund) for refund in response.refunds],
        }
    )


@router.post(
    "/orders/{orderId}/refunds",
    operation_id="orders-refund",
    status_code=201,
    summary="Refund an order",
    description="Admin; `Idempotency-Key` required. `{amountCents?, reason}` (default: what remains) → 201 "
    "`{refund, order}`; a full refund makes the order REFUNDED and restocks it if it has not shipped.",
    response_model=envelope(RefundResult),
    responses={
        201: REPLAYED_RESPONSE,
        **errors(
            403,
            404,
            409,
            422,
            e400="IDEMPOTENCY_KEY_REQUIRED or VALIDATION_ERROR",
            e404=NOT_FOUND,
            e409="REFUND_EXCEEDS_CAPTURED, NOTHING_TO_REFUND or REQUEST_IN_PROGRESS",
        ),
    },
)
async def create_refund(
    body: RefundBody,
    response: Response,
    order_id: str = OrderId,
    idempotency_key: str | None = _KEY_HEADER,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
    key = require_key(idempotency_key)
    request = orders_pb2.CreateRefundRequest(
        order_id=order_id,
        amount_cents=body.amount_cents or 0,
        reason=body.reason,
        request_id=key,
    )
    result, headers = await idempotent_call(
        state.clients.orders.CreateRefund(request, metadata=principal.metadata, timeout=30)
    )
    if result.replayed:
        headers[REPLAYED_HEADER] = "true"
    response.headers.update(headers)
    await state.shared.order_changed(order_id)
    return data({"refund": refund_json(result.refund), "order": order_json(result.order)})
