"""RPC handlers of the orders service: parse the request, check the caller, call checkout or the
lifecycle, map the result."""

from __future__ import annotations

import grpc

from services.orders import domain
from services.orders.mapping import order_proto, status_name
from services.orders.server_helpers import REPLAYED_METADATA, bearer_of
from shop.lib.context import require_admin, require_user
from shop.orders.v1 import orders_pb2, orders_pb2_grpc


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def CreateOrder(self, request, context):  # noqa: N802
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

    async def GetOrder(self, request, context):  # noqa: N802
        caller = require_user()
        view = await self.runtime.lifecycle.get(caller, request.order_id)
        return orders_pb2.GetOrderResponse(order=order_proto(view))

    async def ListOrders(self, request, context):  # noqa: N802
        caller = require_user()
        return await self.runtime.lifecycle.list(caller, request)

    async def CancelOrder(self, request, context):  # noqa: N802
        caller = require_user()
        view = await self.runtime.lifecycle.cancel(caller, request.order_id, request.reason)
        return orders_pb2.CancelOrderResponse(order=order_proto(view))

    async def UpdateOrderStatus(self, request, context):  # noqa: N802
        caller = require_admin()
        target = status_name(request.status) if request.status else ""
        if target not in (domain.PROCESSING, domain.SHIPPED, domain.DELIVERED):
            from shop.lib.errors import ValidationError

            raise ValidationError.single("status", "must be one of PROCESSING, SHIPPED, DELIVERED")
        view = await self.runtime.lifecycle.update_status(
            caller, request.order_id, target, request.carrier, request.tracking_number
        )
        return orders_pb2.UpdateOrderStatusResponse(order=order_proto(view))

    async def WatchOrder(self, request, context):  # noqa: N802
        caller = require_user()
        async for message in self.runtime.lifecycle.watch(caller, request.order_id):
            yield message

    async def ListOrderPayments(self, request, context):  # noqa: N802
        caller = require_user()
        listing = await self.runtime.lifecycle.payments(caller, request.order_id)
        return payments_response(listing)

    async def CreateRefund(self, request, context):  # noqa: N802
        caller = require_admin()
        response, replayed = await self.runtime.lifecycle.refund(caller, request)
        response.replayed = replayed
        return response


def payments_response(listing) -> orders_pb2.ListOrderPaymentsResponse:
    from shop.payments.v1 import payments_pb2

    def name(enum, value: int, prefix: str) -> str:
        return enum.Name(value).removeprefix(prefix)

    return orders_pb2.ListOrderPaymentsResponse(
        payments=[
            orders_pb2.PaymentRecord(
                id=p.id,
                status=name(payments_pb2.PaymentStatus, p.status, "PAYMENT_STATUS_"),
                method=p.method,
                brand=p.brand,
                last4=p.last4,
                amount_cents=p.amount_cents,
                captured_cents=p.captured_cents,
                refunded_cents=p.refunded_cents,
                currency_code=p.currency_code,
                provider=p.provider,
                create_time=p.create_time,
            )
            for p in listing.payments
        ],
        refunds=[
            orders_pb2.RefundRecord(
                id=r.id,
                payment_id=r.payment_id,
                amount_cents=r.amount_cents,
                status=name(payments_pb2.RefundStatus, r.status, "REFUND_STATUS_"),
                reason=r.reason,
                create_time=r.create_time,
            )
            for r in listing.refunds
        ],
    )


__all__ = ["OrdersServicer", "grpc"]
