"""RPC handlers of the orders service, a thin adapter: check the caller, call the use case
(`checkout.py`, `lifecycle.py`, `refunds.py`), map the answer (`mapping.py`)."""

from __future__ import annotations

from services.orders.mapping import ORDER_STATUSES, order_payments_proto, order_proto
from shop.lib.context import require_admin, require_user
from shop.lib.idempotency import REPLAYED_METADATA
from shop.orders.v1 import orders_pb2, orders_pb2_grpc


def bearer_of(context) -> str | None:
    """The caller's access token (forwarded to auth to read the customer's email)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def CreateOrder(self, request, context):
        caller = require_user()
        try:
            body, replayed = await self.runtime.checkout.create_order(caller, request, bearer_of(context))
        except Exception as exc:
            if getattr(exc, "replayed", False):
                await context.send_initial_metadata(REPLAYED_METADATA)
            raise
        response = orders_pb2.CreateOrderResponse.FromString(body)
        response.replayed = replayed
        return response

    async def GetOrder(self, request, context):
        caller = require_user()
        view = await self.runtime.lifecycle.get(caller, request.order_id)
        return orders_pb2.GetOrderResponse(order=order_proto(view))

    async def ListOrders(self, request, context):
        caller = require_user()
        status = ORDER_STATUSES.optional(request.status)
        views, next_token, total = await self.runtime.lifecycle.list(
            caller, status=status, user_id=request.user_id, size=request.page_size, page_token=request.page_token
        )
        return orders_pb2.ListOrdersResponse(
            orders=[order_proto(view) for view in views], next_page_token=next_token, total_size=total
        )

    async def CancelOrder(self, request, context):
        caller = require_user()
        view = await self.runtime.lifecycle.cancel(caller, request.order_id, request.reason)
        return orders_pb2.CancelOrderResponse(order=order_proto(view))

    async def UpdateOrderStatus(self, request, context):
        caller = require_admin()
        target = ORDER_STATUSES.optional(request.status) or ""
        view = await self.runtime.lifecycle.update_status(
            caller, request.order_id, target, request.carrier, request.tracking_number
        )
        return orders_pb2.UpdateOrderStatusResponse(order=order_proto(view))

    async def ListOrderPayments(self, request, context):
        caller = require_user()
        listing = await self.runtime.refunds.payments(caller, request.order_id)
        return order_payments_proto(listing)

    async def CreateRefund(self, request, context):
        caller = require_admin()
        response, replayed = await self.runtime.refunds.refund(caller, request)
        response.replayed = replayed
        return response
