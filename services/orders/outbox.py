"""The outbox relay: side effects owed after a state change, retried until done.

Rows are written in the same transaction as the state change that owes them. A relay takes an
order's rows together (orders.outbox_lock_until) and runs them in their per-order sequence, so a
restock never overtakes the commit it undoes. `OutboxRelay.handlers` maps each `OutboxKind` to its
handler; each is idempotent downstream (reservation id = order id, checkout id = order id, refund
request ids); an email may be sent twice if the process dies between sending and marking the row
done (at-least-once). A handler answers what it learned about the order (reservation state,
refunded cents, payment status).

Rule: money captured for an order that cannot be fulfilled is refunded automatically. A PAID
order whose reservation lapsed and whose stock is gone (CommitReservation answers
RESERVATION_RELEASED) becomes CANCELLED with a full refund and an email, never PAID without goods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import structlog

from services.orders import domain, repository
from services.orders.domain import OutboxKind
from services.orders.mapping import PAYMENT_STATUSES
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.clients import ServiceClients
from shop.lib.db import Database, utcnow
from shop.lib.errors import decode_rpc_error
from shop.lib.logging import safe_error_text
from shop.lib.periodic import Periodic
from shop.payments.v1 import payments_pb2

log = structlog.get_logger("orders.outbox")

Handler = Callable[[Any, Any], Awaitable[dict[str, Any]]]


class PermanentFailure(Exception):
    """The side effect can never succeed (the row is marked dead, with the reason)."""


class OutboxRelay:
    def __init__(self, *, settings, db: Database, clients: ServiceClients, mailer) -> None:
        self.settings = settings
        self.db = db
        self.clients = clients
        self.mailer = mailer
        self._tasks: set[asyncio.Future] = set()
        self.handlers: dict[OutboxKind, Handler] = {
            OutboxKind.COMMIT_RESERVATION: self.commit_reservation,
            OutboxKind.RELEASE_RESERVATION: self.release_reservation,
            OutboxKind.RETURN_STOCK: self.return_stock,
            OutboxKind.RESTORE_CART: self.restore_cart,
            OutboxKind.CLEAR_CART: self.clear_cart,
            OutboxKind.RECORD_PURCHASES: self.record_purchases,
            OutboxKind.REFUND: self.refund,
            OutboxKind.EMAIL: self.email,
        }

    def soon(self, order_id: str) -> None:
        """Runs an order's rows in the background, right after the answer that owes them."""
        task = asyncio.ensure_future(self.run_order(order_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_order(self, order_id: str, wait_seconds: float = 5.0) -> bool:
        """Runs an order's pending rows now (best effort): when another relay holds them, waits up to
        `wait_seconds` for it. True when none is left pending."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        try:
            while True:
                outcome = await self._run_order(order_id, due_only=False)
                if outcome != "locked" or asyncio.get_running_loop().time() > deadline:
                    return outcome == "done"
                await asyncio.sleep(0.05)
        except Exception:
            log.exception("outbox.run_failed", order_id=order_id)
            return False

    async def _run_order(self, order_id: str, *, due_only: bool) -> str:
        """ "done" (nothing left), "failed" (a row must wait for a retry) or "locked" (another relay)."""
        now = utcnow()
        until = now + timedelta(seconds=self.settings.outbox_lock_seconds)
        order, rows = await repository.claim_outbox(self.db, order_id, until=until, now=now)
        if order is None:
            return "locked" if await repository.order_row(self.db, order_id) is not None else "done"
        done: list[str] = []
        learned: dict[str, Any] = {}
        try:
            for row in rows:
                if due_only and row.next_attempt_at > utcnow():
                    return "failed"
                try:
                    change = await self._handler(row.kind)(row, order)
                except (TimeoutError, grpc.aio.AioRpcError, OSError, PermanentFailure) as exc:
                    if await self._failed(row, exc):
                        continue  # dead: it no longer blocks the rows after it
                    return "failed"
                done.append(row.id)
                if change:  # the next rows see what this one changed (e.g. the reservation state)
                    learned.update(change)
                    order = order._replace(**change)
            return "done"
        finally:
            # What ran, what it taught us about the order, and the lock back, atomically. A crash
            # before it runs the rows again (each is idempotent; an email is at-least-once).
            await repository.release_outbox(self.db, order_id, until=until, done_ids=done, learned=learned)

    def _handler(self, kind: str) -> Handler:
        try:
            return self.handlers[OutboxKind(kind)]
        except ValueError:
            raise PermanentFailure(f"unknown outbox kind {kind!r}") from None

    async def _failed(self, row: Any, exc: BaseException) -> bool:
        """Records a failed attempt; True when the row is dead (it then no longer blocks the rows after it)."""
        if isinstance(exc, grpc.aio.AioRpcError):
            remote = decode_rpc_error(exc)
            reason = f"{remote.grpc_code.name} {remote.code}: {remote.message}"
        else:
            reason = safe_error_text(exc)  # stored and logged: never a database error's values
        attempts = row.attempts + 1
        dead = isinstance(exc, PermanentFailure) or attempts >= self.settings.outbox_max_attempts
        delay = min(self.settings.outbox_max_backoff_seconds, 0.25 * (2 ** min(attempts, 10)))
        async with self.db.write() as tx:
            await tx.execute(
                repository.OUTBOX_FAILED,
                id=row.id,
                state="dead" if dead else "pending",
                attempts=attempts,
                reason=reason[:2000],
                retry_at=utcnow() + timedelta(seconds=delay),
            )
        (log.error if dead else log.warning)(
            "outbox.failed",
            order_id=row.order_id,
            kind=row.kind,
            attempts=attempts,
            reason=reason,
            dead=dead,
        )
        return dead

    # -- handlers ------------------------------------------------------------------------------

    async def commit_reservation(self, row: Any, order: Any) -> dict[str, Any]:
        """The stock is sold and the purchases recorded (one catalog transaction)."""
        try:
            await self.clients.catalog.CommitReservation(
                catalog_pb2.CommitReservationRequest(reservation_id=order.id, user_id=order.user_id)
            )
        except grpc.aio.AioRpcError as exc:
            if decode_rpc_error(exc).code != "RESERVATION_RELEASED":
                raise
            await self.unfulfillable(order)
            return {"reservation_state": "released"}
        return {"reservation_state": "committed"}

    async def unfulfillable(self, order: Any) -> None:
        """Paid, but the reservation lapsed and the stock is gone: CANCELLED, refunded in full."""
        now = utcnow()
        note = "The goods were no longer in stock; the payment is refunded in full."
        async with self.db.write() as tx:
            current = await tx.one(repository.ORDER_FOR_UPDATE, order_id=order.id)
            if current is None or current.status not in (domain.PAID, domain.PROCESSING):
                return
            await tx.execute(
                repository.SET_STATUS,
                order_id=order.id,
                status=domain.CANCELLED,
                failure_code="STOCK_UNAVAILABLE",
                now=now,
            )
            await repository.append_history(tx, order.id, domain.CANCELLED, note, now)
            await repository.append_outbox(
                tx, order.id, OutboxKind.REFUND, {"reason": "Out of stock", "request_id": f"cancel-{order.id}"}, now
            )
            await repository.append_outbox(
                tx,
                order.id,
                OutboxKind.EMAIL,
                {"template": "cancelled", "reason": "The goods were no longer in stock."},
                now,
            )
        log.warning("outbox.unfulfillable", order_id=order.id)
        self.soon(order.id)

    async def release_reservation(self, row: Any, order: Any) -> dict[str, Any]:
        if await self._not_found(
            self.clients.catalog.ReleaseReservation(catalog_pb2.ReleaseReservationRequest(reservation_id=order.id))
        ):
            return {}
        return {"reservation_state": "released"}

    async def return_stock(self, row: Any, order: Any) -> dict[str, Any]:
        """Put the goods back: restock a committed reservation, release one still held."""
        if order.reservation_state == "committed":
            await self.clients.catalog.RestockReservation(
                catalog_pb2.RestockReservationRequest(reservation_id=order.id)
            )
            return {"reservation_state": "restocked"}
        if order.reservation_state in ("reserved", "none"):
            # "none": a reservation may exist that this service never heard back about.
            await self._not_found(
                self.clients.catalog.ReleaseReservation(catalog_pb2.ReleaseReservationRequest(reservation_id=order.id))
            )
            return {"reservation_state": "released"}
        return {}

    async def restore_cart(self, row: Any, order: Any) -> dict[str, Any]:
        """The checkout did not go through: the lines it took go back into the buyer's cart."""
        await self.clients.cart.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=order.id))
        return {}

    async def clear_cart(self, row: Any, order: Any) -> dict[str, Any]:
        await self.clients.cart.ClearCart(cart_pb2.ClearCartRequest(owner=cart_pb2.CartOwner(user_id=order.user_id)))
        return {}

    async def record_purchases(self, row: Any, order: Any) -> dict[str, Any]:
        items = await repository.items_of(self.db, order.id)
        await self.clients.catalog.RecordPurchases(
            catalog_pb2.RecordPurchasesRequest(
                order_id=order.id, user_id=order.user_id, product_ids=[item.product_id for item in items]
            )
        )
        return {}

    async def refund(self, row: Any, order: Any) -> dict[str, Any]:
        """Refund what remains captured (cancel); nothing captured is nothing to do."""
        try:
            response = await self.clients.payments.CreateRefund(
                payments_pb2.CreateRefundRequest(
                    order_id=order.id,
                    amount_cents=0,
                    reason=row.payload.get("reason", "") or "Order cancelled",
                    request_id=row.payload.get("request_id") or f"cancel-{order.id}",
                )
            )
        except grpc.aio.AioRpcError as exc:
            remote = decode_rpc_error(exc)
            if remote.code in ("REFUND_EXCEEDS_CAPTURED", "PAYMENT_NOT_FOUND") or remote.grpc_code in (
                grpc.StatusCode.NOT_FOUND,
            ):
                return {}
            raise
        payment = response.payment
        return {
            "refunded_cents": payment.refunded_cents,
            "payment_status": PAYMENT_STATUSES.name(payment.status),
        }

    async def email(self, row: Any, order: Any) -> dict[str, Any]:
        if not order.customer_email:
            log.warning("outbox.email_skipped", order_id=order.id, reason="no email address")
            return {}
        url = self.settings.frontend_url
        template = row.payload.get("template")
        if template == "paid":
            subject, body = domain.paid_email(order.number, order.total_cents, order.currency, url, order.id)
        elif template == "shipped":
            subject, body = domain.shipped_email(order.number, order.carrier, order.tracking_number, url, order.id)
        elif template == "cancelled":
            subject, body = domain.cancelled_email(order.number, row.payload.get("reason", ""), url, order.id)
        else:
            raise PermanentFailure(f"unknown email template {template!r}")
        await asyncio.wait_for(self.mailer.send(order.customer_email, subject, body), 30)
        return {}

    async def _not_found(self, call) -> bool:
        """Awaits a call; True when it failed NOT_FOUND (nothing was reserved)."""
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            raise
        return False

    # -- the loop ------------------------------------------------------------------------------

    async def run_due_once(self) -> int:
        async with self.db.transaction() as session:
            order_ids = await repository.orders_with_due_outbox(session)
        for order_id in order_ids:
            try:
                await self._run_order(order_id, due_only=True)
            except Exception:
                log.exception("outbox.run_failed", order_id=order_id)
        return len(order_ids)

    async def loop(self) -> None:
        await Periodic("outbox.loop", self.run_due_once, lambda: self.settings.outbox_interval_seconds)()
