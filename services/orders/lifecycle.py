"""After checkout: reading, listing, cancelling, fulfilment, refunds and watching orders."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import grpc

from services.orders import domain, repository
from services.orders.checkout import in_progress, key_reused
from services.orders.domain import OutboxKind
from services.orders.mapping import (
    error_from_stored,
    error_to_stored,
    history_proto,
    http_status_of,
    order_proto,
    status_enum,
)
from services.orders.models import IdempotencyKey, Order
from services.orders.repository import OrderView
from shop.lib.context import Caller
from shop.lib.db import to_timestamp, utcnow
from shop.lib.errors import Conflict, NotFound, ShopError, decode_rpc_error
from shop.lib.pagination import PageTokens, fingerprint, page_size
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.orders.events import OrderEvents
    from services.orders.outbox import OutboxRelay
    from shop.lib.clients import ServiceClients
    from shop.lib.db import Database

REFUND_OPERATION = "refund"


def not_found() -> NotFound:
    return NotFound("Order not found.", code="ORDER_NOT_FOUND")


def visible(order: Order | None, caller: Caller) -> bool:
    return order is not None and (caller.is_admin or order.user_id == caller.user_id)


def payment_status_name(value: int) -> str:
    return payments_pb2.PaymentStatus.Name(value).removeprefix("PAYMENT_STATUS_")


class Lifecycle:
    def __init__(self, *, settings, db: Database, clients: ServiceClients, events: OrderEvents,
                 outbox: OutboxRelay) -> None:
        self.settings = settings
        self.db = db
        self.clients = clients
        self.events = events
        self.outbox = outbox
        self.tokens = PageTokens(settings.page_token_secret)

    async def get(self, caller: Caller, order_id: str) -> OrderView:
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id)
            if not visible(order, caller):
                raise not_found()
            return await repository.load_view(session, order)

    async def list(self, caller: Caller, request: orders_pb2.ListOrdersRequest) -> orders_pb2.ListOrdersResponse:
        size = page_size(request.page_size)
        status = None
        if request.status:
            status = orders_pb2.OrderStatus.Name(request.status).removeprefix("ORDER_STATUS_")
        # Customers see their own orders whatever userId they pass; admins see all or one user's.
        user_id = (request.user_id or None) if caller.is_admin else caller.user_id
        viewer = "*" if caller.is_admin else caller.user_id
        query = fingerprint(user_id=user_id or "", status=status or "", viewer=viewer)
        position = self.tokens.decode(request.page_token, query)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position["t"]), str(position["id"]))
            except (KeyError, ValueError, TypeError):
                from shop.lib.errors import InvalidArgument

                raise InvalidArgument("The page token is not valid.", code="INVALID_PAGE_TOKEN") from None
        async with self.db.transaction() as session:
            rows, total = await repository.list_orders(
                session, user_id=user_id, status=status, after=after, limit=size
            )
            more = len(rows) > size
            rows = rows[:size]
            views = await repository.load_views(session, rows)
        next_token = ""
        if more and rows:
            last = rows[-1]
            next_token = self.tokens.encode({"t": last.created_at.isoformat(), "id": last.id}, query)
        return orders_pb2.ListOrdersResponse(
            orders=[order_proto(view) for view in views], next_page_token=next_token, total_size=total
        )

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, caller: Caller, order_id: str, reason: str) -> OrderView:
        reason = (reason or "").strip()[:300]
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id, for_update=True)
            if not visible(order, caller):
                raise not_found()
            domain.check_cancellable(order.status)
            if order.status == domain.PENDING:
                # A checkout in flight owns its order; a charge under way decides it first.
                running = order.lease_until is not None and order.lease_until > utcnow()
                domain.check_pending_cancellable(order.stage, running)
                order.stage = str(domain.Stage.DONE)
                order.payment_token = ""
                order.failure_code = "CANCELLED"
            who = "admin" if caller.is_admin and caller.user_id != order.user_id else "customer"
            note = f"Cancelled by the {who}." + (f" Reason: {reason}" if reason else "")
            await repository.set_status(session, order, domain.CANCELLED, note)
            refund = {"reason": reason or "Order cancelled", "request_id": f"cancel-{order.id}"}
            await repository.add_outbox(session, order.id, OutboxKind.REFUND, refund)
            await repository.add_outbox(session, order.id, OutboxKind.RETURN_STOCK, {})
            if order.failure_code == "CANCELLED":  # a stalled checkout may have taken the cart
                await repository.add_outbox(session, order.id, OutboxKind.RESTORE_CART, {})
            email = {"template": "cancelled", "reason": reason}
            await repository.add_outbox(session, order.id, OutboxKind.EMAIL, email)
            if order.stage == domain.Stage.DONE and order.failure_code == "CANCELLED":
                # A stalled checkout: whatever the old key waits for ends here.
                await complete_order_key(
                    session, order.id, error=Conflict("The order was cancelled.", code="ORDER_CANCELLED")
                )
        self.events.notify(order_id)
        await self.outbox.run_order(order_id)
        return await self.get(caller, order_id)

    # -- fulfilment ----------------------------------------------------------------------------

    async def update_status(
        self, caller: Caller, order_id: str, target: str, carrier: str, tracking_number: str
    ) -> OrderView:
        carrier, tracking_number = carrier.strip(), tracking_number.strip()
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id, for_update=True)
            if order is None:
                raise not_found()
            domain.check_transition(order.status, target, carrier, tracking_number)
            note = ""
            if target == domain.SHIPPED:
                order.carrier = carrier
                order.tracking_number = tracking_number
                note = f"Shipped with {carrier}, tracking number {tracking_number}."
            await repository.set_status(session, order, target, note)
            if target == domain.SHIPPED:
                await repository.add_outbox(session, order.id, OutboxKind.EMAIL, {"template": "shipped"})
        self.events.notify(order_id)
        await self.outbox.run_order(order_id)
        return await self.get(caller, order_id)

    # -- payments and refunds ------------------------------------------------------------------

    async def payments(self, caller: Caller, order_id: str) -> payments_pb2.ListPaymentsResponse:
        await self.get(caller, order_id)
        return await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))

    async def refund(
        self, caller: Caller, request: orders_pb2.CreateRefundRequest
    ) -> tuple[orders_pb2.CreateRefundResponse, bool]:
        from services.orders.domain import validate_idempotency_key

        validate_idempotency_key(request.request_id)
        if request.amount_cents < 0:
            from shop.lib.errors import ValidationError

            raise ValidationError.single("amountCents", "must be positive (omit it to refund what remains)")
        reason = (request.reason or "").strip()
        if len(reason) > 500:
            from shop.lib.errors import ValidationError

            raise ValidationError.single("reason", "must be at most 500 characters")
        fp = request.request_fingerprint or hashlib.sha256(
            f"{request.order_id}|{request.amount_cents}|{reason}".encode()
        ).hexdigest()
        user_id = caller.user_id or ""
        async with self.db.transaction() as session:
            order = await repository.get_order(session, request.order_id)
            if order is None:
                raise not_found()
            row = await repository.get_idempotency(session, user_id, request.request_id)
        if row is not None:
            if row.operation != REFUND_OPERATION or row.fingerprint != fp or row.order_id != request.order_id:
                raise key_reused()
            if row.state == "completed":
                return self._stored_refund(row)
            async with self.db.transaction() as session:
                if not await self._claim_key(session, row.id):
                    raise in_progress()
        else:
            row = IdempotencyKey(
                user_id=user_id,
                key=request.request_id,
                operation=REFUND_OPERATION,
                fingerprint=fp,
                state="in_progress",
                order_id=request.order_id,
                locked_until=utcnow() + _seconds(self.settings.stale_after_seconds),
            )
            try:
                async with self.db.transaction() as session:
                    session.add(row)
            except Exception as exc:  # a concurrent request with the same key won
                from sqlalchemy.exc import IntegrityError

                if not isinstance(exc, IntegrityError):
                    raise
                raise in_progress() from None
        try:
            response = await self._refund(request.order_id, request.amount_cents, reason, f"refund-{row.id}")
        except ShopError as error:
            if error.grpc_code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                                   grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                # A refusal changes nothing: free the key so a corrected retry may reuse it.
                async with self.db.transaction() as session:
                    stored = await session.get(IdempotencyKey, row.id)
                    if stored is not None:
                        await session.delete(stored)
            raise
        async with self.db.transaction() as session:
            stored = await session.get(IdempotencyKey, row.id)
            if stored is not None:
                stored.state = "completed"
                stored.completed_at = utcnow()
                stored.response_status = 201
                stored.response_body = response.SerializeToString()
        return response, False

    def _stored_refund(self, row: IdempotencyKey) -> tuple[orders_pb2.CreateRefundResponse, bool]:
        if row.error is not None:
            raise error_from_stored(row.error)
        return orders_pb2.CreateRefundResponse.FromString(row.response_body or b""), True

    async def _claim_key(self, session, row_id: str) -> bool:
        from sqlalchemy import or_, update

        now = utcnow()
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == row_id,
                IdempotencyKey.state == "in_progress",
                or_(IdempotencyKey.locked_until.is_(None), IdempotencyKey.locked_until < now),
            )
            .values(locked_until=now + _seconds(self.settings.stale_after_seconds))
        )
        return result.rowcount == 1

    async def _refund(
        self, order_id: str, amount_cents: int, reason: str, request_id: str
    ) -> orders_pb2.CreateRefundResponse:
        listing = await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id)
            assert order is not None
            status = order.status
        captured = sum(p.captured_cents for p in listing.payments)
        refunded = sum(p.refunded_cents for p in listing.payments)
        already = "request_id" in payments_pb2.Refund.DESCRIPTOR.fields_by_name and any(
            r.request_id == request_id for r in listing.refunds
        )
        if not already:
            domain.check_refundable(status, captured - refunded, amount_cents)
        try:
            result = await self.clients.payments.CreateRefund(
                payments_pb2.CreateRefundRequest(
                    order_id=order_id, amount_cents=amount_cents, reason=reason or "Refund", request_id=request_id
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise decode_rpc_error(exc).to_shop_error() from None
        payment = result.payment
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id, for_update=True)
            assert order is not None
            order.refunded_cents = max(order.refunded_cents, payment.refunded_cents)
            order.payment_status = payment_status_name(payment.status)
            order.updated_at = utcnow()
            full = payment.captured_cents > 0 and payment.refunded_cents >= payment.captured_cents
            if full and order.status in domain.REFUNDABLE:
                shipped = order.status not in domain.NOT_SHIPPED
                await repository.set_status(
                    session, order, domain.REFUNDED, "Refunded in full." + ("" if shipped else " Restocked.")
                )
                if not shipped:
                    await repository.add_outbox(session, order.id, OutboxKind.RETURN_STOCK, {})
            view = await repository.load_view(session, order)
        self.events.notify(order_id)
        await self.outbox.run_order(order_id)
        refund = result.refund
        return orders_pb2.CreateRefundResponse(
            refund=orders_pb2.RefundRecord(
                id=refund.id,
                payment_id=refund.payment_id,
                amount_cents=refund.amount_cents,
                status=payments_pb2.RefundStatus.Name(refund.status).removeprefix("REFUND_STATUS_"),
                reason=refund.reason,
                create_time=refund.create_time,
            ),
            order=order_proto(view),
        )

    # -- watching ------------------------------------------------------------------------------

    async def watch(self, caller: Caller, order_id: str) -> AsyncIterator[orders_pb2.WatchOrderResponse]:
        """First the current state, then one message per status change, until a final status."""
        view = await self.get(caller, order_id)
        last_seq = view.history[-1].seq if view.history else 0
        current = view.history[-1] if view.history else None
        yield orders_pb2.WatchOrderResponse(
            event=history_proto(current) if current is not None else orders_pb2.HistoryEntry(
                status=status_enum(view.order.status), time=to_timestamp(view.order.updated_at)
            ),
            order=order_proto(view),
        )
        if view.order.status in domain.FINAL_STATUSES:
            return
        with self.events.subscribe(order_id) as changed:
            while True:
                try:
                    await asyncio.wait_for(changed.wait(), self.settings.watch_poll_seconds)
                except TimeoutError:
                    pass
                changed.clear()
                async with self.db.transaction() as session:
                    entries = await repository.history_since(session, order_id, last_seq)
                    order = await repository.get_order(session, order_id)
                    if order is None:
                        return
                    view = await repository.load_view(session, order) if entries else None
                for entry in entries:
                    last_seq = entry.seq
                    assert view is not None
                    yield orders_pb2.WatchOrderResponse(event=history_proto(entry), order=order_proto(view))
                if order.status in domain.FINAL_STATUSES:
                    return


async def complete_order_key(
    session: AsyncSession, order_id: str, *, body: bytes | None = None, error: Any = None
) -> None:
    """The checkout key of an order gets its final answer (the checkout's own, on its lean path, is
    `checkout.complete_key`)."""
    row = await repository.idempotency_for_order(session, order_id)
    if row is None or row.state == "completed":
        return
    row.state = "completed"
    row.completed_at = utcnow()
    row.locked_until = None
    if error is not None:
        row.response_status = http_status_of(error)
        row.error = error_to_stored(error)
    else:
        row.response_status = 201
        row.response_body = body


def _seconds(value: float):
    from datetime import timedelta

    return timedelta(seconds=value)


__all__ = ["Lifecycle", "error_to_stored", "http_status_of"]
