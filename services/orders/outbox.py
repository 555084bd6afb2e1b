"""The outbox relay: side effects owed after a state change, retried until done.

Rows are written in the same transaction as the state change that owes them. A relay takes an
order's rows together (orders.outbox_lock_until) and runs them in their per-order sequence, so a
restock never overtakes the commit it undoes. Each handler is idempotent downstream (reservation id
= order id, refund request ids, RecordPurchases by order id); an email may be sent twice if the
process dies between sending and marking the row done (at-least-once).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import structlog

from services.orders import domain, repository
from services.orders.models import Order, OutboxEntry
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.db import utcnow
from shop.lib.errors import decode_rpc_error
from shop.payments.v1 import payments_pb2

if TYPE_CHECKING:
    from services.orders.server import Runtime

log = structlog.get_logger("orders.outbox")


class PermanentFailure(Exception):
    """The side effect can never succeed (the row is marked dead, with the reason)."""


class OutboxRelay:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.settings = runtime.settings
        self.db = runtime.db

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
        """"done" (nothing left), "failed" (a row must wait for a retry) or "locked" (another relay)."""
        async with self.db.transaction() as session:
            lock = await repository.claim_outbox(session, order_id, self.settings.outbox_lock_seconds)
        if lock is None:
            async with self.db.transaction() as session:
                exists = await repository.get_order(session, order_id) is not None
            return "locked" if exists else "done"
        try:
            async with self.db.transaction() as session:
                rows = await repository.pending_outbox(session, order_id)
            for row in rows:
                if due_only and row.next_attempt_at > utcnow():
                    return "failed"
                if not await self._run_row(row):
                    return "failed"
            return "done"
        finally:
            async with self.db.transaction() as session:
                await repository.release_outbox(session, order_id, lock)

    async def _run_row(self, row: OutboxEntry) -> bool:
        async with self.db.transaction() as session:
            order = await repository.get_order(session, row.order_id)
        if order is None:
            return True
        try:
            updates = await self.handle(row, order)
        except (TimeoutError, grpc.aio.AioRpcError, OSError, PermanentFailure) as exc:
            return await self._failed(row, exc)
        async with self.db.transaction() as session:
            current = await session.get(OutboxEntry, row.id)
            if current is not None:
                current.state = "done"
                current.done_at = utcnow()
                current.attempts += 1
            if updates:
                locked = await repository.get_order(session, row.order_id, for_update=True)
                if locked is not None:
                    for name, value in updates.items():
                        setattr(locked, name, value)
        return True

    async def _failed(self, row: OutboxEntry, exc: BaseException) -> bool:
        if isinstance(exc, grpc.aio.AioRpcError):
            remote = decode_rpc_error(exc)
            reason = f"{remote.grpc_code.name} {remote.code}: {remote.message}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        attempts = row.attempts + 1
        dead = isinstance(exc, PermanentFailure) or attempts >= self.settings.outbox_max_attempts
        delay = min(self.settings.outbox_max_backoff_seconds, 0.25 * (2 ** min(attempts, 10)))
        async with self.db.transaction() as session:
            current = await session.get(OutboxEntry, row.id)
            if current is not None:
                current.attempts = attempts
                current.last_error = reason[:2000]
                current.next_attempt_at = utcnow() + timedelta(seconds=delay)
                if dead:
                    current.state = "dead"
        (log.error if dead else log.warning)(
            "outbox.failed", order_id=row.order_id, kind=row.kind, attempts=attempts, reason=reason, dead=dead
        )
        # A dead row does not block the rows after it; a row to retry does.
        return dead

    # -- handlers: each returns column updates for the order --------------------------------------

    async def handle(self, row: OutboxEntry, order: Order) -> dict:
        clients = self.rt.clients
        kind = row.kind
        if kind == "commit_reservation":
            await clients.catalog.CommitReservation(catalog_pb2.CommitReservationRequest(reservation_id=order.id))
            return {"reservation_state": "committed"}
        if kind == "release_reservation":
            if await self._ignore_not_found(
                clients.catalog.ReleaseReservation(catalog_pb2.ReleaseReservationRequest(reservation_id=order.id))
            ):
                return {}
            return {"reservation_state": "released"}
        if kind == "return_stock":
            # Put the goods back: restock a committed reservation, release one still held.
            if order.reservation_state == "committed":
                await clients.catalog.RestockReservation(
                    catalog_pb2.RestockReservationRequest(reservation_id=order.id)
                )
                return {"reservation_state": "restocked"}
            if order.reservation_state in ("reserved", "none"):
                # "none": a reservation may exist that this service never heard back about.
                await self._ignore_not_found(
                    clients.catalog.ReleaseReservation(catalog_pb2.ReleaseReservationRequest(reservation_id=order.id))
                )
                return {"reservation_state": "released"}
            return {}
        if kind == "clear_cart":
            await clients.cart.ClearCart(cart_pb2.ClearCartRequest(owner=cart_pb2.CartOwner(user_id=order.user_id)))
            return {}
        if kind == "record_purchases":
            async with self.db.transaction() as session:
                items = (await repository.load_view(session, order)).items
            await clients.catalog.RecordPurchases(
                catalog_pb2.RecordPurchasesRequest(
                    order_id=order.id, user_id=order.user_id, product_ids=[item.product_id for item in items]
                )
            )
            return {}
        if kind == "refund":
            # Refund what remains captured (cancel); nothing captured is nothing to do.
            try:
                response = await clients.payments.CreateRefund(
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
                "payment_status": payments_pb2.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_"),
            }
        if kind == "email":
            await self._email(row, order)
            return {}
        raise PermanentFailure(f"unknown outbox kind {kind!r}")

    async def _ignore_not_found(self, call) -> bool:
        """Awaits a call; True when it failed NOT_FOUND (nothing was reserved)."""
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            raise
        return False

    async def _email(self, row: OutboxEntry, order: Order) -> None:
        if not order.customer_email:
            log.warning("outbox.email_skipped", order_id=order.id, reason="no email address")
            return
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
        await asyncio.wait_for(self.rt.mailer.send(order.customer_email, subject, body), 30)

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
        while True:
            try:
                await self.run_due_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox.loop_failed")
            await asyncio.sleep(self.settings.outbox_interval_seconds)
