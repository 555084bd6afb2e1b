"""Stock queries: the reservation protocol's statements (lean `Query`s, run in the use case's
`db.write()` transaction; same text on both dialects unless noted) and the manual adjustments'
(ORM, in the use case's session). stock.py (the use case) decides which run, in what order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.domain.stock import COMMITTED
from services.catalog.models import Product, Reservation, ReservationLine, StockAdjustment
from shop.lib.db import Database, Query, QueryColumn, Transaction, UTCDateTime


@dataclass
class ReservedLine:
    """A reserved line with the product as it was when it was reserved."""

    product_id: str
    quantity: int
    sku: str
    name: str
    unit_price_cents: int
    currency_code: str

    def values(self) -> dict[str, Any]:
        """The line by field name: the ReservedLine proto's fields and the line INSERT's parameters."""
        return vars(self).copy()


@dataclass
class ReservationView:
    id: str
    status: str
    lines: list[tuple[str, int]]
    expires_at: datetime
    priced_lines: list[ReservedLine] = field(default_factory=list)


_NOW = {"now": UTCDateTime()}
_TIMES = {**_NOW, "expires_at": UTCDateTime()}
# Claims the reservation id: a concurrent twin waits here on the primary key, then finds it taken.
CLAIM_RESERVATION = Query(
    "INSERT INTO reservations (id, status, expires_at, created_at, updated_at) "
    "VALUES (:id, 'RESERVED', :expires_at, :now, :now) ON CONFLICT (id) DO NOTHING RETURNING id",
    [Reservation.id],
    types=_TIMES,
)
# Takes one line's stock and reads the product's snapshot in the same statement.
TAKE_STOCK = Query(
    "UPDATE products SET stock = stock - :quantity "
    "WHERE id = :product_id AND stock >= :quantity AND status = 'ACTIVE' "
    "RETURNING sku, name, price_cents, currency",
    [Product.sku, Product.name, Product.price_cents, Product.currency],
)
RETURN_STOCK = Query("UPDATE products SET stock = stock + :quantity WHERE id = :product_id")
# Why lines could not be taken (only on that failure path).
STOCK_OF = Query(
    "SELECT id, stock, status FROM products WHERE id IN :ids",
    [Product.id, Product.stock, Product.status],
    postgres_sql="SELECT id, stock, status FROM products WHERE id = ANY(:ids)",
    expanding=("ids",),
)
INSERT_LINES_POSTGRES = Query(
    "INSERT INTO reservation_lines (reservation_id, product_id, quantity, sku, name, unit_price_cents, currency_code) "
    "SELECT CAST(:reservation_id AS VARCHAR(64)), * FROM unnest("
    ":product_ids::varchar[], :quantities::int[], :skus::varchar[], :names::varchar[], :prices::bigint[], "
    ":currencies::varchar[])"
)
INSERT_LINE = Query(
    "INSERT INTO reservation_lines (reservation_id, product_id, quantity, sku, name, unit_price_cents, currency_code) "
    "VALUES (:reservation_id, :product_id, :quantity, :sku, :name, :unit_price_cents, :currency_code)"
)
# The reservation and its lines in product-id order, each with its snapshot (lines reserved before
# the snapshot columns existed take the product's current values).
_RESERVATION_SQL = (
    "SELECT r.status, r.expires_at, l.product_id, l.quantity, coalesce(l.sku, p.sku) AS sku, "
    "coalesce(l.name, p.name) AS name, coalesce(l.unit_price_cents, p.price_cents) AS unit_price_cents, "
    "coalesce(l.currency_code, p.currency) AS currency_code "
    "FROM reservations r LEFT JOIN reservation_lines l ON l.reservation_id = r.id "
    "LEFT JOIN products p ON p.id = l.product_id WHERE r.id = :id ORDER BY l.product_id"
)
_RESERVATION_COLUMNS: list[QueryColumn] = [
    Reservation.status,
    Reservation.expires_at,
    ReservationLine.product_id,
    ReservationLine.quantity,
    column("sku", String()),
    column("name", String()),
    column("unit_price_cents", BigInteger()),
    column("currency_code", String()),
]
RESERVATION = Query(_RESERVATION_SQL, _RESERVATION_COLUMNS)
RESERVATION_FOR_UPDATE = Query(
    _RESERVATION_SQL, _RESERVATION_COLUMNS, postgres_sql=_RESERVATION_SQL + " FOR UPDATE OF r"
)
SET_STATUS = Query("UPDATE reservations SET status = :status, updated_at = :now WHERE id = :id", types=_NOW)
SET_RESERVED = Query(
    "UPDATE reservations SET status = 'RESERVED', expires_at = :expires_at, updated_at = :now WHERE id = :id",
    types=_TIMES,
)
# CommitReservation.user_id: what RecordPurchases does, for the reservation's products (order id =
# reservation id). PostgreSQL marks the reviews verified in the same statement; SQLite runs both.
_RECORD_PURCHASES_SQL = (
    "INSERT INTO purchases (user_id, product_id, order_id, created_at) "
    "SELECT CAST(:user_id AS VARCHAR(36)), product_id, reservation_id, :now "
    "FROM reservation_lines WHERE reservation_id = :id "
    "ON CONFLICT (user_id, product_id) DO NOTHING"
)
_VERIFY_REVIEWS_SQL = (
    "UPDATE reviews SET verified_purchase = true WHERE user_id = :user_id AND NOT verified_purchase "
    "AND product_id IN (SELECT product_id FROM reservation_lines WHERE reservation_id = :id)"
)
RECORD_RESERVED_PURCHASES = Query(
    _RECORD_PURCHASES_SQL,
    types=_NOW,
    postgres_sql=f"WITH bought AS ({_RECORD_PURCHASES_SQL}) {_VERIFY_REVIEWS_SQL}",
)
VERIFY_RESERVED_REVIEWS = Query(_VERIFY_REVIEWS_SQL)
# CommitReservation's common case on PostgreSQL, one statement: a RESERVED reservation COMMITTED,
# the user's purchases recorded and their reviews verified (when a user is given), answering the
# reservation's lines as _RESERVATION_SQL does (its status as it was); no row when it was not
# RESERVED (the caller then takes the locked path).
_MOVED = "JOIN reservation_lines l ON l.reservation_id = moved.id"
COMMIT_RESERVED = Query(
    "WITH moved AS (UPDATE reservations SET status = 'COMMITTED', updated_at = :now "  # noqa: S608  # nosec B608  # constant SQL
    "WHERE id = :id AND status = 'RESERVED' RETURNING id), "
    "bought AS (INSERT INTO purchases (user_id, product_id, order_id, created_at) "
    f"SELECT CAST(:user_id AS VARCHAR(36)), l.product_id, l.reservation_id, :now FROM moved {_MOVED} "
    "WHERE CAST(:user_id AS VARCHAR(36)) IS NOT NULL ON CONFLICT (user_id, product_id) DO NOTHING), "
    "verified AS (UPDATE reviews SET verified_purchase = true WHERE user_id = :user_id AND NOT verified_purchase "
    f"AND product_id IN (SELECT l.product_id FROM moved {_MOVED})) "
    + _RESERVATION_SQL.replace("FROM reservations r ", "FROM moved JOIN reservations r ON r.id = moved.id "),
    _RESERVATION_COLUMNS,
)
# The sweep's batch: RESERVED reservations past their expiry, oldest first (a lean read).
EXPIRED_RESERVATIONS = Query(
    "SELECT id FROM reservations WHERE status = 'RESERVED' AND expires_at < :now ORDER BY expires_at LIMIT :limit",
    [Reservation.id],
    types=_NOW,
)


# -- reservations, in the use case's lean transaction ----------------------------------------------


async def claim(tx: Transaction, reservation_id: str, expires_at: datetime, now: datetime) -> bool:
    """True if this call created the reservation row (False: the id was taken)."""
    return await tx.one(CLAIM_RESERVATION, id=reservation_id, expires_at=expires_at, now=now) is not None


async def load(tx: Transaction, reservation_id: str, *, lock: bool) -> ReservationView | None:
    """The reservation with its priced lines (one statement; `lock`: its row locked for the rest of
    the transaction on PostgreSQL — SQLite writers are serialised anyway)."""
    return _view(reservation_id, await tx.all(RESERVATION_FOR_UPDATE if lock else RESERVATION, id=reservation_id))


async def commit_reserved(
    db: Database, reservation_id: str, user_id: str | None, now: datetime
) -> ReservationView | None:
    """PostgreSQL: COMMIT_RESERVED in autocommit (atomic by itself); the reservation COMMITTED, or
    None when it was not RESERVED (nothing changed)."""
    view = _view(reservation_id, await db.write_one(COMMIT_RESERVED, id=reservation_id, user_id=user_id, now=now))
    if view is not None:
        view.status = COMMITTED
    return view


def _view(reservation_id: str, rows: list) -> ReservationView | None:
    """The reservation from _RESERVATION_SQL's rows (one per line; a reservation without lines has one)."""
    if not rows:
        return None
    priced = [
        ReservedLine(row.product_id, row.quantity, row.sku, row.name, row.unit_price_cents, row.currency_code)
        for row in rows
        if row.product_id is not None
    ]
    return ReservationView(
        reservation_id,
        rows[0].status,
        [(line.product_id, line.quantity) for line in priced],
        rows[0].expires_at,
        priced,
    )


async def take_line(tx: Transaction, product_id: str, quantity: int) -> ReservedLine | None:
    """Takes one line's stock if there is enough and the product is ACTIVE; the line with the
    product's snapshot, else None (nothing changed)."""
    row = await tx.one(TAKE_STOCK, product_id=product_id, quantity=quantity)
    if row is None:
        return None
    return ReservedLine(product_id, quantity, row.sku, row.name, row.price_cents, row.currency)


async def stock_of(tx: Transaction, product_ids: list[str]) -> dict[str, Any]:
    """The rows (id, stock, status) of those products that exist, by id."""
    return {row.id: row for row in await tx.all(STOCK_OF, ids=product_ids)}


async def insert_lines(tx: Transaction, reservation_id: str, priced: list[ReservedLine], *, postgres: bool) -> None:
    if postgres:  # every line in one statement
        await tx.execute(
            INSERT_LINES_POSTGRES,
            reservation_id=reservation_id,
            product_ids=[line.product_id for line in priced],
            quantities=[line.quantity for line in priced],
            skus=[line.sku for line in priced],
            names=[line.name for line in priced],
            prices=[line.unit_price_cents for line in priced],
            currencies=[line.currency_code for line in priced],
        )
        return
    for line in priced:  # SQLite: in-process, a statement per line costs no round trip
        await tx.execute(
            INSERT_LINE,
            reservation_id=reservation_id,
            **line.values(),
        )


async def return_stock(tx: Transaction, lines: list[tuple[str, int]]) -> None:
    for product_id, quantity in lines:  # product-id order, like ReserveStock
        await tx.execute(RETURN_STOCK, product_id=product_id, quantity=quantity)


async def set_status(tx: Transaction, reservation_id: str, status: str, now: datetime) -> None:
    await tx.execute(SET_STATUS, id=reservation_id, status=status, now=now)


async def set_reserved(tx: Transaction, reservation_id: str, expires_at: datetime, now: datetime) -> None:
    await tx.execute(SET_RESERVED, id=reservation_id, expires_at=expires_at, now=now)


async def record_reserved_purchases(
    tx: Transaction, reservation_id: str, user_id: str, now: datetime, *, postgres: bool
) -> None:
    """The user's purchases of the reservation's products, and their reviews marked verified."""
    await tx.execute(RECORD_RESERVED_PURCHASES, id=reservation_id, user_id=user_id, now=now)
    if not postgres:  # PostgreSQL did this in the statement above
        await tx.execute(VERIFY_RESERVED_REVIEWS, id=reservation_id, user_id=user_id)


# -- manual adjustments, in the use case's ORM session ---------------------------------------------


async def adjustment_by_request_id(session: AsyncSession, request_id: str) -> StockAdjustment | None:
    return (
        await session.execute(select(StockAdjustment).where(StockAdjustment.request_id == request_id))
    ).scalar_one_or_none()


async def change_stock(session: AsyncSession, product_id: str, delta: int, now: datetime) -> int | None:
    """Adds `delta` unless that goes below 0 (conditional, so concurrent reservations can never
    drive stock negative); the new stock, else None."""
    result = await session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock + delta >= 0)
        .values(stock=Product.stock + delta, updated_at=now)
        .returning(Product.stock)
    )
    return result.scalar_one_or_none()


async def add_adjustment(session: AsyncSession, adjustment: StockAdjustment) -> None:
    """Inserts now (a concurrent repeat of its request id fails here, inside the transaction)."""
    session.add(adjustment)
    await session.flush()


# What an adjustment with this request id answered (read again after losing a race for it).
ADJUSTMENT_BY_REQUEST_ID = Query(
    "SELECT stock_after FROM stock_adjustments WHERE request_id = :request_id", [StockAdjustment.stock_after]
)
