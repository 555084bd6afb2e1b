"""Use cases of stock: the reservation protocol of checkout (ReserveStock, CommitReservation,
ReleaseReservation, RestockReservation, the sweep of expired reservations) on the lean path, and
manual adjustments (AdjustStock). Each call is one transaction that it opens and commits: the
reservations' a `db.write()` of prepared statements, the adjustments' an ORM one. What each
status allows is domain/stock.py's (`*_step`); the statements are repository/stock.py's.

Every writer takes product rows in product-id order (lines are merged and sorted by
stock_rules.merge_lines), so concurrent reservations never deadlock."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from services.catalog.domain import products as product_rules
from services.catalog.domain import stock as stock_rules
from services.catalog.models import StockAdjustment
from services.catalog.repository import products as product_queries
from services.catalog.repository import stock as queries
from services.catalog.repository.stock import ReservationView, ReservedLine
from shop.lib.db import Database, Transaction, new_id, utcnow
from shop.lib.errors import Conflict
from shop.lib.idempotency import key_reused

SWEEP_BATCH = 100


class Stock:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reservations (lean path) ----------------------------------------------------------------

    async def reserve(
        self, reservation_id: str, lines: list[tuple[str, int]], ttl_seconds: float, renew: bool = False
    ) -> ReservationView:
        """All lines or none, one conditional UPDATE per line in product-id order, in one transaction.
        Idempotent: the reservation row is claimed first (`INSERT ... ON CONFLICT DO NOTHING`), so a
        concurrent twin waits on the primary key and then reads the winner's result; a repeat never
        reserves twice. `renew` on a repeat: RESERVED gets a new expiry, RELEASED is re-taken."""
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl_seconds)
        async with self.db.write() as tx:
            if await queries.claim(tx, reservation_id, expires_at, now):
                priced = await take_stock(tx, lines)
                await queries.insert_lines(tx, reservation_id, priced, postgres=self.db.is_postgres)
                return ReservationView(reservation_id, stock_rules.RESERVED, lines, expires_at, priced)
            view = await queries.load(tx, reservation_id, lock=renew)
            if view is None:  # cannot happen (reservations are never deleted); safe to retry
                raise Conflict("The reservation is being changed concurrently; retry.", code="RESERVATION_BUSY")
            stock_rules.check_same_lines(view.lines, lines)
            step = stock_rules.renew_step(view.status, renew)
            if step.retake:
                await take_stock(tx, lines)  # all or none; the stored snapshot stays
            if step.to is not None:
                await queries.set_reserved(tx, reservation_id, expires_at, now)
                view.status, view.expires_at = step.to, expires_at
            return view

    async def commit_reservation(self, reservation_id: str, user_id: str | None = None) -> ReservationView:
        """RESERVED -> COMMITTED; RELEASED (expired before the paid order got here) is re-taken all
        or none and committed, else RESERVATION_RELEASED with nothing changed. With `user_id`, the
        user's purchases of the products are recorded in the same transaction (idempotent)."""
        now = utcnow()
        if self.db.is_postgres:  # the common case (RESERVED) in one statement; the others below
            committed = await queries.commit_reserved(self.db, reservation_id, user_id, now)
            if committed is not None:
                return committed
        async with self.db.write() as tx:
            view = await locked(tx, reservation_id)
            step = stock_rules.commit_step(view.status)
            if step.retake:
                try:
                    await take_stock(tx, view.lines)
                except Conflict as exc:
                    raise stock_rules.released_stock_gone(exc) from None
            if step.to is not None:
                await queries.set_status(tx, reservation_id, step.to, now)
                view.status = step.to
            if user_id is not None:
                await queries.record_reserved_purchases(tx, reservation_id, user_id, now, postgres=self.db.is_postgres)
            return view

    async def release_reservation(
        self, reservation_id: str, *, only_expired_before: datetime | None = None
    ) -> ReservationView | None:
        """RESERVED -> RELEASED, its stock back. `only_expired_before` (the sweep): None when the
        reservation was committed or renewed meanwhile (re-checked under the row lock)."""
        async with self.db.write() as tx:
            view = await locked(tx, reservation_id)
            step = stock_rules.release_step(view.status, view.expires_at, expired_before=only_expired_before)
            if step is None:
                return None
            await self._apply(tx, view, step)
            return view

    async def restock_reservation(self, reservation_id: str) -> ReservationView:
        """COMMITTED -> RESTOCKED, its stock back (a cancelled or refunded order)."""
        async with self.db.write() as tx:
            view = await locked(tx, reservation_id)
            await self._apply(tx, view, stock_rules.restock_step(view.status))
            return view

    @staticmethod
    async def _apply(tx: Transaction, view: ReservationView, step: stock_rules.Step) -> None:
        if step.give_back:
            await queries.return_stock(tx, view.lines)
        if step.to is not None:
            await queries.set_status(tx, view.id, step.to, utcnow())
            view.status = step.to

    async def release_expired(self, now: datetime | None = None) -> int:
        """The sweep: releases every RESERVED reservation whose TTL has passed, each in its own
        transaction; returns how many."""
        now = now or utcnow()
        released = 0
        while True:
            ids = [row.id for row in await self.db.read_all(queries.EXPIRED_RESERVATIONS, now=now, limit=SWEEP_BATCH)]
            for reservation_id in ids:
                if await self.release_reservation(reservation_id, only_expired_before=now) is not None:
                    released += 1
            if len(ids) < SWEEP_BATCH:
                return released

    # -- manual adjustments (ORM) ----------------------------------------------------------------

    async def adjust_stock(
        self, product_id: str, delta: int, reason: str, user_id: str | None, role: str | None, request_id: str | None
    ) -> int:
        """AdjustStock by an admin or the owning seller, audited in `stock_adjustments`; never below
        0. A repeat of `request_id` answers what the first one did. Returns the new stock."""
        try:
            async with self.db.transaction() as session:
                if request_id is not None:
                    done = await queries.adjustment_by_request_id(session, request_id)
                    if done is not None:
                        if (done.product_id, done.delta) != (product_id, delta):
                            raise key_reused("This idempotency key was used for another adjustment.")
                        return done.stock_after
                product = await product_queries.product_for_update(session, product_id)
                product = product_rules.check_manageable(product, user_id, role)
                stock_rules.check_adjustment(product_id, product.stock, delta)
                stock = await queries.change_stock(session, product_id, delta, utcnow())
                if stock is None:
                    raise Conflict("Not enough stock.", code="INSUFFICIENT_STOCK", details={"productIds": [product_id]})
                await queries.add_adjustment(
                    session,
                    StockAdjustment(
                        id=new_id(),
                        product_id=product_id,
                        delta=delta,
                        reason=reason,
                        user_id=user_id,
                        request_id=request_id,
                        stock_after=stock,
                        created_at=utcnow(),
                    ),
                )
            return stock
        except IntegrityError:
            if request_id is None:
                raise
            # A concurrent repeat of the same request id won: answer what it answered.
            done = await self.db.read_one(queries.ADJUSTMENT_BY_REQUEST_ID, request_id=request_id)
            if done is None:
                raise
            return done.stock_after


async def locked(tx: Transaction, reservation_id: str) -> ReservationView:
    """The reservation with its row locked for the rest of the transaction, else NOT_FOUND."""
    view = await queries.load(tx, reservation_id, lock=True)
    if view is None:
        raise stock_rules.reservation_not_found()
    return view


async def take_stock(tx: Transaction, lines: list[tuple[str, int]]) -> list[ReservedLine]:
    """Takes every line's quantity (product-id order; one conditional UPDATE per line that also
    reads the product's snapshot), or raises — the caller's transaction then rolls back, so
    nothing is taken. Why a line could not be taken: one classifying query, only on this path."""
    priced = []
    for index, (product_id, quantity) in enumerate(lines):
        line = await queries.take_line(tx, product_id, quantity)
        if line is None:
            rest = lines[index:]
            raise stock_rules.shortfall(rest, await queries.stock_of(tx, [p for p, _ in rest]))
        priced.append(line)
    return priced
