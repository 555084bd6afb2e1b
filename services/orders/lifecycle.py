"""Use cases of an order after checkout: GetOrder, ListOrders, CancelOrder, UpdateOrderStatus.
(Refunds and the payments listing are `refunds.py`'s.)

Reads take the lean path (`db.read_*`, no transaction), except the keyset listing (ORM). Each
write is one transaction that locks the order's row and writes the status, its history entry and
the outbox rows it owes; the outbox then runs (`outbox.py`). Cancel is a lean `db.write()`
transaction: a stalled checkout's key gets its final answer there through the same query as the
saga's (`saga.complete_key`). The rules are `domain.py`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.orders import domain, repository
from services.orders.domain import OutboxKind
from services.orders.repository import OrderView
from services.orders.saga import complete_key
from shop.lib.context import Caller
from shop.lib.db import utcnow
from shop.lib.errors import Conflict, NotFound
from shop.lib.pagination import PageTokens, aware_datetime, fingerprint, page_size

if TYPE_CHECKING:
    from services.orders.outbox import OutboxRelay
    from shop.lib.db import Database


def not_found() -> NotFound:
    return NotFound("Order not found.", code="ORDER_NOT_FOUND")


def visible(order: Any, caller: Caller) -> bool:
    """The owner and admins see an order; anyone else is told it does not exist."""
    return order is not None and (caller.is_admin or order.user_id == caller.user_id)


class Lifecycle:
    def __init__(self, *, settings, db: Database, outbox: OutboxRelay) -> None:
        self.settings = settings
        self.db = db
        self.outbox = outbox
        self.tokens = PageTokens(settings.page_token_secret)

    async def get(self, caller: Caller, order_id: str) -> OrderView:
        order = await repository.order_row(self.db, order_id)
        if not visible(order, caller):
            raise not_found()
        view = await repository.view(self.db, order_id, order)
        assert view is not None
        return view

    async def list(
        self, caller: Caller, *, status: str | None, user_id: str, size: int, page_token: str
    ) -> tuple[list[OrderView], str, int]:
        """A page of orders, newest first: (views, next page token, total)."""
        size = page_size(size)
        # Customers see their own orders whatever userId they pass; admins see all or one user's.
        owner = (user_id or None) if caller.is_admin else caller.user_id
        viewer = "*" if caller.is_admin else caller.user_id
        query = fingerprint(user_id=owner or "", status=status or "", viewer=viewer)
        after = self.tokens.decode_after(page_token, query, parse_key=aware_datetime, key_field="t")
        async with self.db.transaction() as session:
            rows, total = await repository.list_orders(session, user_id=owner, status=status, after=after, limit=size)
            more = len(rows) > size
            rows = rows[:size]
            views = await repository.load_views(session, rows)
        next_token = ""
        if more and rows:
            last = rows[-1]
            next_token = self.tokens.encode_after(last.created_at, last.id, query, key_field="t")
        return views, next_token, total

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, caller: Caller, order_id: str, reason: str) -> OrderView:
        """CANCELLED, with a refund of what was captured, the stock returned and an email owed
        (outbox); a stalled checkout's cart is restored and its key answered ORDER_CANCELLED."""
        reason = (reason or "").strip()[:300]
        now = utcnow()
        async with self.db.write() as tx:
            order = await tx.one(repository.ORDER_FOR_UPDATE, order_id=order_id)
            if not visible(order, caller):
                raise not_found()
            domain.check_cancellable(order.status)
            stage, payment_token, failure_code = order.stage, order.payment_token, order.failure_code
            if order.status == domain.PENDING:
                # A checkout in flight owns its order; a charge under way decides it first.
                running = order.lease_until is not None and order.lease_until > now
                domain.check_pending_cancellable(order.stage, running)
                stage, payment_token, failure_code = str(domain.Stage.DONE), "", "CANCELLED"
            await tx.execute(
                repository.CANCEL,
                order_id=order.id,
                stage=stage,
                payment_token=payment_token,
                failure_code=failure_code,
                now=now,
            )
            who = "admin" if caller.is_admin and caller.user_id != order.user_id else "customer"
            note = f"Cancelled by the {who}." + (f" Reason: {reason}" if reason else "")
            await repository.append_history(tx, order.id, domain.CANCELLED, note, now)
            refund = {"reason": reason or "Order cancelled", "request_id": f"cancel-{order.id}"}
            await repository.append_outbox(tx, order.id, OutboxKind.REFUND, refund, now)
            await repository.append_outbox(tx, order.id, OutboxKind.RETURN_STOCK, {}, now)
            if failure_code == "CANCELLED":  # a stalled checkout may have taken the cart
                await repository.append_outbox(tx, order.id, OutboxKind.RESTORE_CART, {}, now)
            await repository.append_outbox(
                tx, order.id, OutboxKind.EMAIL, {"template": "cancelled", "reason": reason}, now
            )
            if stage == domain.Stage.DONE and failure_code == "CANCELLED":
                # A stalled checkout: whatever the old key waits for ends here.
                cancelled = Conflict("The order was cancelled.", code="ORDER_CANCELLED")
                await complete_key(tx, order.id, now, error=cancelled)
        await self.outbox.run_order(order_id)
        return await self.get(caller, order_id)

    # -- fulfilment ----------------------------------------------------------------------------

    async def update_status(
        self, caller: Caller, order_id: str, target: str, carrier: str, tracking_number: str
    ) -> OrderView:
        """PAID → PROCESSING → SHIPPED → DELIVERED (an admin); SHIPPED owes an email."""
        domain.check_fulfilment_target(target)
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
        await self.outbox.run_order(order_id)
        return await self.get(caller, order_id)
