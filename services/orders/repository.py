"""Queries of the orders service, nothing else (no commits, no rules): ORM functions taking the
use case's session (lifecycle, refunds, leases, listing), then the lean `shop.lib.db.Query`
statements of the hot paths (the checkout saga, the outbox relay, cancel, order reads), run in
`db.write()` or by `db.read_*` with no transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import domain
from services.orders.models import IdempotencyKey, Order, OrderHistory, OrderItem, OutboxEntry
from shop.lib.db import Database, Query, Transaction, UTCDateTime, affected_rows, named_row, new_id, utcnow


@dataclass
class OrderView:
    """An order with its lines and history (what the API shows; `mapping.order_proto`)."""

    order: Any  # an `Order`, or a lean row with the same columns
    items: list
    history: list


async def get_order(session: AsyncSession, order_id: str, *, for_update: bool = False) -> Order | None:
    statement = select(Order).where(Order.id == order_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def load_view(session: AsyncSession, order: Order) -> OrderView:
    items = (
        (await session.execute(select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.position)))
        .scalars()
        .all()
    )
    history = (
        (
            await session.execute(
                select(OrderHistory).where(OrderHistory.order_id == order.id).order_by(OrderHistory.seq)
            )
        )
        .scalars()
        .all()
    )
    return OrderView(order, list(items), list(history))


async def add_history(
    session: AsyncSession, order_id: str, status: str, note: str = "", at: datetime | None = None
) -> None:
    last = (
        await session.execute(select(func.max(OrderHistory.seq)).where(OrderHistory.order_id == order_id))
    ).scalar_one_or_none() or 0
    session.add(OrderHistory(order_id=order_id, seq=last + 1, status=status, note=note[:500], at=at or utcnow()))


async def add_outbox(session: AsyncSession, order_id: str, kind: str, payload: dict[str, Any] | None = None) -> None:
    last = (
        await session.execute(select(func.max(OutboxEntry.seq)).where(OutboxEntry.order_id == order_id))
    ).scalar_one_or_none() or 0
    session.add(OutboxEntry(order_id=order_id, seq=last + 1, kind=str(kind), payload=payload or {}, state="pending"))


async def set_status(
    session: AsyncSession, order: Order, status: str, note: str = "", *, now: datetime | None = None
) -> None:
    """A status change: the row, its history entry, the version (callers hold the row lock)."""
    now = now or utcnow()
    order.status = status
    order.updated_at = now
    order.version += 1
    await add_history(session, order.id, status, note, now)


# -- leases ------------------------------------------------------------------------------------


async def claim_lease(session: AsyncSession, order_id: str, seconds: float) -> bool:
    """Takes the saga lease of an unfinished order unless someone else holds it."""
    now = utcnow()
    result = await session.execute(
        update(Order)
        .where(
            Order.id == order_id,
            Order.stage.in_(domain.UNFINISHED_STAGES),
            or_(Order.lease_until.is_(None), Order.lease_until < now),
        )
        .values(lease_until=now + timedelta(seconds=seconds))
    )
    return affected_rows(result) == 1


async def release_lease(session: AsyncSession, order_id: str) -> None:
    await session.execute(update(Order).where(Order.id == order_id).values(lease_until=None))


async def stale_unfinished(session: AsyncSession, limit: int = 50) -> list[str]:
    now = utcnow()
    rows = await session.execute(
        select(Order.id)
        .where(Order.stage.in_(domain.UNFINISHED_STAGES), or_(Order.lease_until.is_(None), Order.lease_until < now))
        .order_by(Order.created_at)
        .limit(limit)
    )
    return [row[0] for row in rows]


# -- outbox ------------------------------------------------------------------------------------


async def orders_with_due_outbox(session: AsyncSession, limit: int = 50) -> list[str]:
    now = utcnow()
    rows = await session.execute(
        select(OutboxEntry.order_id)
        .join(Order, Order.id == OutboxEntry.order_id)
        .where(
            OutboxEntry.state == "pending",
            OutboxEntry.next_attempt_at <= now,
            or_(Order.outbox_lock_until.is_(None), Order.outbox_lock_until < now),
        )
        .group_by(OutboxEntry.order_id)
        .order_by(func.min(OutboxEntry.next_attempt_at))
        .limit(limit)
    )
    return [row[0] for row in rows]


# -- idempotency keys --------------------------------------------------------------------------


async def get_idempotency(
    session: AsyncSession, user_id: str, key: str, *, for_update: bool = False
) -> IdempotencyKey | None:
    statement = select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def insert_key(session: AsyncSession, **values: Any) -> IdempotencyKey:
    """A new key row (a concurrent one with the same (user, key) fails the transaction's commit)."""
    row = IdempotencyKey(**values)
    session.add(row)
    return row


async def claim_key(session: AsyncSession, row_id: str, seconds: float) -> bool:
    """Takes an unfinished key whose holder's lock lapsed; False when it is held or finished."""
    now = utcnow()
    result = await session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == row_id,
            IdempotencyKey.state == "in_progress",
            or_(IdempotencyKey.locked_until.is_(None), IdempotencyKey.locked_until < now),
        )
        .values(locked_until=now + timedelta(seconds=seconds))
    )
    return affected_rows(result) == 1


async def store_key_answer(session: AsyncSession, row_id: str, body: bytes) -> None:
    """A key's final answer: a 201 with this serialized response."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row_id)
        .values(state="completed", completed_at=utcnow(), response_body=body)
    )


async def delete_key(session: AsyncSession, row_id: str) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


async def purge_idempotency(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return affected_rows(result) or 0


# -- listing -----------------------------------------------------------------------------------


async def list_orders(
    session: AsyncSession,
    *,
    user_id: str | None,
    status: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[Order], int]:
    """Newest first, keyset on (created_at, id); returns the page (limit + 1 rows) and the total."""
    filters = []
    if user_id:
        filters.append(Order.user_id == user_id)
    if status:
        filters.append(Order.status == status)
    total = (await session.execute(select(func.count()).select_from(Order).where(*filters))).scalar_one()
    statement = select(Order).where(*filters)
    if after is not None:
        created_at, order_id = after
        statement = statement.where(
            or_(Order.created_at < created_at, and_(Order.created_at == created_at, Order.id < order_id))
        )
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    rows = (await session.execute(statement)).scalars().all()
    return list(rows), int(total)


async def load_views(session: AsyncSession, orders: list[Order]) -> list[OrderView]:
    if not orders:
        return []
    ids = [order.id for order in orders]
    items: dict[str, list[OrderItem]] = {order_id: [] for order_id in ids}
    history: dict[str, list[OrderHistory]] = {order_id: [] for order_id in ids}
    for item in (
        await session.execute(select(OrderItem).where(OrderItem.order_id.in_(ids)).order_by(OrderItem.position))
    ).scalars():
        items[item.order_id].append(item)
    for entry in (
        await session.execute(select(OrderHistory).where(OrderHistory.order_id.in_(ids)).order_by(OrderHistory.seq))
    ).scalars():
        history[entry.order_id].append(entry)
    return [OrderView(order, items[order.id], history[order.id]) for order in orders]


# -- the lean path (shop.lib.db.Query: the saga, the outbox relay, cancel, order reads; no ORM) -----

_TS = UTCDateTime()
_ORDER_COLUMNS = list(Order.__table__.c)
_ORDER_NAMES = ", ".join(f'"{c.name}"' for c in _ORDER_COLUMNS)
_ITEM_COLUMNS = [
    OrderItem.position,
    OrderItem.product_id,
    OrderItem.sku,
    OrderItem.name,
    OrderItem.unit_price_cents,
    OrderItem.quantity,
    OrderItem.line_total_cents,
]
_HISTORY_COLUMNS = [OrderHistory.seq, OrderHistory.status, OrderHistory.note, OrderHistory.at]
_KEY_COLUMNS = list(IdempotencyKey.__table__.c)
# Field names of lean rows built from a statement's columns (named_row).
_ORDER_FIELDS = tuple(c.name for c in _ORDER_COLUMNS)
_ITEM_FIELDS = tuple(c.name for c in _ITEM_COLUMNS)
_HISTORY_FIELDS = tuple(c.name for c in _HISTORY_COLUMNS)
_HISTORY_NAMES = ", ".join(f'"{name}"' for name in _HISTORY_FIELDS)


def _select(columns: list, table: str, where: str, order_by: str = "") -> str:
    """SQL built once at import from the models' own column names (no input reaches it)."""
    names = ", ".join(f'"{c.name}"' for c in columns)
    ordered = f" ORDER BY {order_by}" if order_by else ""
    return f"SELECT {names} FROM {table} WHERE {where}{ordered}"  # noqa: S608  # nosec B608  # SQL from the models' column names, no input


ORDER_ROW = Query(_select(_ORDER_COLUMNS, "orders", "id = :order_id"), _ORDER_COLUMNS)
ITEMS = Query(_select(_ITEM_COLUMNS, "order_items", "order_id = :order_id", "position"), _ITEM_COLUMNS)
HISTORY = Query(_select(_HISTORY_COLUMNS, "order_history", "order_id = :order_id", "seq"), _HISTORY_COLUMNS)
ORDER_FOR_UPDATE = Query(
    _select(_ORDER_COLUMNS, "orders", "id = :order_id"),
    _ORDER_COLUMNS,
    postgres_sql=_select(_ORDER_COLUMNS, "orders", "id = :order_id") + " FOR UPDATE",
)
KEY_ROW = Query(_select(_KEY_COLUMNS, "idempotency_keys", 'user_id = :user_id AND "key" = :key'), _KEY_COLUMNS)
INSERT_KEY_SQL = (
    'INSERT INTO idempotency_keys (id, user_id, "key", operation, fingerprint, state, order_id, locked_until, '
    "created_at) VALUES (:key_row_id, :user_id, :key, :operation, :fingerprint, 'in_progress', :order_id, :lease, "
    ":now)"
)
INSERT_ORDER_SQL = (
    "INSERT INTO orders (id, number, user_id, customer_email, idempotency_key, status, stage, failure_code, "
    "subtotal_cents, tax_cents, shipping_cents, total_cents, currency, shipping_address, payment_method, "
    "payment_token, payment_id, payment_status, payment_brand, payment_last4, captured_cents, refunded_cents, "
    "reservation_state, carrier, tracking_number, lease_until, version, created_at, updated_at) VALUES "
    "(:order_id, :number, :user_id, :email, :key, :status, :stage, '', 0, 0, 0, 0, 'USD', :address, :method, "
    ":token, '', '', '', '', 0, 0, 'none', '', '', :lease, 1, :now, :now)"
)
INSERT_KEY = Query(INSERT_KEY_SQL, types={"lease": _TS, "now": _TS})
INSERT_ORDER = Query(INSERT_ORDER_SQL, types={"lease": _TS, "now": _TS})
# A checkout's start on PostgreSQL: the key, the order and its first history entry in one
# statement (one round trip, atomic by itself; the foreign keys are checked at its end). SQLite,
# which has no INSERT in WITH, runs the three statements in one transaction (`record_pending`).
RECORD_PENDING = Query(
    f"WITH new_key AS ({INSERT_KEY_SQL}), new_order AS ({INSERT_ORDER_SQL} RETURNING {_ORDER_NAMES}), "  # noqa: S608  # nosec B608  # constant SQL
    "new_history AS (INSERT INTO order_history (id, order_id, seq, status, note, at) "
    "VALUES (:history_id, :order_id, 1, :status, :note, :now)) "
    "SELECT * FROM new_order",
    _ORDER_COLUMNS,
)
INSERT_HISTORY = Query(
    "INSERT INTO order_history (id, order_id, seq, status, note, at) VALUES (:id, :order_id, "
    "(SELECT coalesce(max(seq), 0) + 1 FROM order_history WHERE order_id = :same_order_id), :status, :note, :now)",
    types={"now": _TS},
)
INSERT_OUTBOX = Query(
    "INSERT INTO outbox (id, seq, order_id, kind, payload, state, attempts, last_error, next_attempt_at, "
    "created_at) VALUES (:id, (SELECT coalesce(max(seq), 0) + 1 FROM outbox WHERE order_id = :same_order_id), "
    ":order_id, :kind, :payload, 'pending', 0, '', :now, :now)",
    types={"now": _TS},
)
INSERT_ITEM = Query(
    "INSERT INTO order_items (id, order_id, position, product_id, sku, name, unit_price_cents, quantity, "
    "line_total_cents) VALUES (:id, :order_id, :position, :product_id, :sku, :name, :unit_price_cents, "
    ":quantity, :line_total_cents)"
)
# The saga's one move: only from the stage the caller saw, renewing the lease (and locking the row).
_ADVANCE_SET = "UPDATE orders SET stage = :to_stage, lease_until = :lease, updated_at = :now"
_ADVANCE_WHERE = "WHERE id = :order_id AND stage = :from_stage"
ADVANCE = Query(f"{_ADVANCE_SET} {_ADVANCE_WHERE}", types={"lease": _TS, "now": _TS})
_TOTALS_SET = (
    "subtotal_cents = :subtotal, tax_cents = :tax, shipping_cents = :shipping, "
    "total_cents = :total, currency = :currency, reservation_state = 'reserved'"
)
SET_TOTALS = Query(f"UPDATE orders SET {_TOTALS_SET} WHERE id = :order_id")  # noqa: S608  # nosec B608  # constant SQL
# The reservation recorded on PostgreSQL: the move to RESERVED with the totals, and the priced lines
# (parallel arrays; empty when they are stored already), one statement, atomic by itself, none of it
# when the order was no longer at `from_stage`. SQLite runs ADVANCE, INSERT_ITEM and SET_TOTALS in
# one transaction (`record_reservation`).
RECORD_RESERVATION = Query(
    f"WITH moved AS ({_ADVANCE_SET}, {_TOTALS_SET} {_ADVANCE_WHERE} RETURNING id), "  # noqa: S608  # nosec B608  # constant SQL
    "new_items AS (INSERT INTO order_items (id, order_id, position, product_id, sku, name, unit_price_cents, "
    "quantity, line_total_cents) SELECT line.id, moved.id, line.position, line.product_id, line.sku, line.name, "
    "line.unit_price_cents, line.quantity, line.unit_price_cents * line.quantity FROM moved, unnest("
    "CAST(:item_ids AS text[]), CAST(:positions AS integer[]), CAST(:product_ids AS text[]), "
    "CAST(:skus AS text[]), CAST(:names AS text[]), CAST(:unit_prices AS bigint[]), CAST(:quantities AS integer[])"
    ") AS line(id, position, product_id, sku, name, unit_price_cents, quantity)) "
    "SELECT count(*) AS moved FROM moved"
)
# The saga's final outcome; it answers the order as it now is (the stored 201 is built from it).
_OUTCOME_SET = (
    "payment_token = '', failure_code = :failure_code, payment_id = :payment_id, "
    "payment_status = :payment_status, payment_brand = :brand, payment_last4 = :last4, "
    "captured_cents = :captured, version = version + 1"
)
_OUTCOME = f"UPDATE orders SET status = :status, lease_until = NULL, {_OUTCOME_SET} WHERE id = :order_id"  # noqa: S608  # nosec B608  # constant SQL
SET_OUTCOME = Query(
    f"{_OUTCOME} RETURNING {_ORDER_NAMES}",  # noqa: S608  # nosec B608  # the models' column names, no input
    _ORDER_COLUMNS,
)
# The outcome recorded on PostgreSQL: the move to DONE with the outcome, its history entry and the
# outbox rows it owes (parallel arrays), one statement answering the order as it now is; no row and
# nothing written when the order was no longer at `from_stage`. SQLite runs ADVANCE, SET_OUTCOME,
# INSERT_HISTORY and INSERT_OUTBOX (`record_outcome`).
_RECORD_OUTCOME_WITH = (
    "WITH moved AS (UPDATE orders SET stage = :to_stage, lease_until = NULL, updated_at = :now, "  # noqa: S608  # nosec B608  # constant SQL
    f"status = :status, {_OUTCOME_SET} {_ADVANCE_WHERE} RETURNING {_ORDER_NAMES}), "
    "new_history AS (INSERT INTO order_history (id, order_id, seq, status, note, at) SELECT :history_id, moved.id, "
    "(SELECT coalesce(max(seq), 0) + 1 FROM order_history WHERE order_id = :order_id), :status, :note, :now "
    f"FROM moved RETURNING {_HISTORY_NAMES}), "
    "new_outbox AS (INSERT INTO outbox (id, seq, order_id, kind, payload, state, attempts, last_error, "
    "next_attempt_at, created_at) SELECT owed.id, "
    "(SELECT coalesce(max(seq), 0) FROM outbox WHERE order_id = :order_id) + owed.position, moved.id, owed.kind, "
    "CAST(owed.payload AS json), 'pending', 0, '', :now, :now FROM moved, "
    "unnest(CAST(:outbox_ids AS text[]), CAST(:kinds AS text[]), CAST(:payloads AS text[])) "
    "WITH ORDINALITY AS owed(id, kind, payload, position)) "
)


def _as_arrays(prefix: str, fields: tuple[str, ...], rows: str, order_by: str) -> str:
    """One array per field of `rows` (a subquery), in `order_by` order; SQL from constants only."""
    arrays = ", ".join(f'array_agg(r."{name}" ORDER BY r."{order_by}") AS "{prefix}{name}"' for name in fields)
    return f"SELECT {arrays} FROM {rows} AS r"  # noqa: S608  # nosec B608  # constant SQL


# It also answers the view the stored 201 is built from, so no read follows it: the order's
# columns, then its lines and its history as parallel arrays, one column per field (the new history
# entry comes from the statement itself: its snapshot does not show it in the table).
RECORD_OUTCOME = Query(
    f"{_RECORD_OUTCOME_WITH}SELECT moved.*, lines.*, entries.* FROM moved, LATERAL ("  # noqa: S608  # nosec B608  # constant SQL
    + _as_arrays("line_", _ITEM_FIELDS, "(SELECT * FROM order_items WHERE order_id = :order_id)", "position")
    + ") AS lines, LATERAL ("
    + _as_arrays(
        "history_",
        _HISTORY_FIELDS,
        f"(SELECT {_HISTORY_NAMES} FROM order_history WHERE order_id = :order_id "  # noqa: S608  # nosec B608  # the models' column names, no input
        f"UNION ALL SELECT {_HISTORY_NAMES} FROM new_history)",
        "seq",
    )
    + ") AS entries"
)
SET_STATUS = Query(
    "UPDATE orders SET status = :status, failure_code = :failure_code, version = version + 1, updated_at = :now "
    "WHERE id = :order_id",
    types={"now": _TS},
)
# CancelOrder (the caller holds the row lock): a PENDING order's checkout also ends here.
CANCEL = Query(
    "UPDATE orders SET status = 'CANCELLED', stage = :stage, payment_token = :payment_token, "
    "failure_code = :failure_code, version = version + 1, updated_at = :now WHERE id = :order_id",
    types={"now": _TS},
)
# The final answer of an order's checkout key (its saga's outcome, or a cancel of a stalled one).
COMPLETE_KEY = Query(
    "UPDATE idempotency_keys SET state = 'completed', completed_at = :now, locked_until = NULL, "
    "response_body = :body, error = :error "
    "WHERE order_id = :order_id AND operation = 'create_order' AND state <> 'completed'",
    types={"now": _TS},
)
DELETE_ORDER = [
    Query("DELETE FROM order_items WHERE order_id = :order_id"),
    Query("DELETE FROM order_history WHERE order_id = :order_id"),
    Query("DELETE FROM outbox WHERE order_id = :order_id"),
    Query("DELETE FROM orders WHERE id = :order_id"),
]
# The outbox relay: one relay per order at a time (orders.outbox_lock_until). The claim answers
# the order row it locked (none: another relay holds it, or there is no such order).
_CLAIM = (
    "UPDATE orders SET outbox_lock_until = :until "
    "WHERE id = :order_id AND (outbox_lock_until IS NULL OR outbox_lock_until < :now)"
)
CLAIM_OUTBOX = Query(
    f"{_CLAIM} RETURNING {_ORDER_NAMES}",  # noqa: S608  # nosec B608  # the models' column names, no input
    _ORDER_COLUMNS,
    types={"until": _TS, "now": _TS},
)
_OUTBOX_COLUMNS = [
    OutboxEntry.id,
    OutboxEntry.order_id,
    OutboxEntry.seq,
    OutboxEntry.kind,
    OutboxEntry.payload,
    OutboxEntry.attempts,
    OutboxEntry.next_attempt_at,
]
_OUTBOX_FIELDS = tuple(c.name for c in _OUTBOX_COLUMNS)
PENDING_OUTBOX = Query(
    _select(_OUTBOX_COLUMNS, "outbox", "order_id = :order_id AND state = 'pending'", "seq"), _OUTBOX_COLUMNS
)
# PostgreSQL: the claim and the pending rows in one statement, each row the order's columns then a
# pending outbox row's (NULLs when it has none), in sequence.
CLAIM_OUTBOX_WITH_PENDING = Query(
    f"WITH claimed AS ({_CLAIM} RETURNING {_ORDER_NAMES}) SELECT claimed.*, "  # noqa: S608  # nosec B608  # the models' column names, no input
    + ", ".join(f'pending."{name}" AS "outbox_{name}"' for name in _OUTBOX_FIELDS)
    + " FROM claimed LEFT JOIN outbox AS pending ON pending.order_id = claimed.id AND pending.state = 'pending' "
    "ORDER BY pending.seq"
)
OUTBOX_DONE = Query(
    "UPDATE outbox SET state = 'done', done_at = :now, attempts = attempts + 1 WHERE id IN :ids",
    postgres_sql="UPDATE outbox SET state = 'done', done_at = :now, attempts = attempts + 1 WHERE id = ANY(:ids)",
    expanding=("ids",),
    types={"now": _TS},
)
OUTBOX_FAILED = Query(
    "UPDATE outbox SET state = :state, attempts = :attempts, last_error = :reason, next_attempt_at = :retry_at "
    "WHERE id = :id",
    types={"retry_at": _TS},
)
# The relay's end: what its side effects learned about the order (NULL: unchanged), and the lock
# given back if it is still this relay's.
_RELEASE_SQL = (
    "UPDATE orders SET reservation_state = coalesce(:reservation_state, reservation_state), "
    "refunded_cents = coalesce(:refunded_cents, refunded_cents), "
    "payment_status = coalesce(:payment_status, payment_status), "
    "outbox_lock_until = CASE WHEN outbox_lock_until = :until THEN NULL ELSE outbox_lock_until END "
    "WHERE id = :order_id"
)
RELEASE_OUTBOX = Query(_RELEASE_SQL, types={"until": _TS})
# PostgreSQL: the rows done and the release as one statement (a data-modifying WITH), atomic by itself.
DONE_AND_RELEASE_OUTBOX = Query(
    "WITH done AS (UPDATE outbox SET state = 'done', done_at = :now, attempts = attempts + 1 "  # noqa: S608  # nosec B608  # constant SQL
    f"WHERE id = ANY(:ids)) {_RELEASE_SQL}"
)


async def _all(db_or_tx: Database | Transaction, query: Query, **params: Any) -> list:
    """A lean query's rows: a read with no transaction (`Database`), or inside a write's."""
    if isinstance(db_or_tx, Database):
        return await db_or_tx.read_all(query, **params)
    return await db_or_tx.all(query, **params)


async def order_row(db_or_tx: Database | Transaction, order_id: str) -> Any:
    rows = await _all(db_or_tx, ORDER_ROW, order_id=order_id)
    return rows[0] if rows else None


async def key_row(db: Database, user_id: str, key: str) -> Any:
    return await db.read_one(KEY_ROW, user_id=user_id, key=key)


async def items_of(db_or_tx: Database | Transaction, order_id: str) -> list:
    return await _all(db_or_tx, ITEMS, order_id=order_id)


async def view(db_or_tx: Database | Transaction, order_id: str, order: Any = None) -> OrderView | None:
    """The order (`order` when the caller has just read it), its lines and its history."""
    if order is None:
        order = await order_row(db_or_tx, order_id)
    if order is None:
        return None
    return OrderView(order, await items_of(db_or_tx, order_id), await _all(db_or_tx, HISTORY, order_id=order_id))


async def advance(
    tx: Transaction, order_id: str, from_stage: str, to_stage: str, *, lease_seconds: float, now: datetime
) -> bool:
    """Moves an order from the stage its driver saw to the next one, renewing the lease, and locks
    the row for the rest of the transaction. False when someone else moved it first."""
    lease = None if to_stage == domain.Stage.DONE else now + timedelta(seconds=lease_seconds)
    changed = await tx.execute(
        ADVANCE, order_id=order_id, from_stage=str(from_stage), to_stage=str(to_stage), lease=lease, now=now
    )
    return changed == 1


async def record_reservation(
    db: Database,
    order_id: str,
    from_stage: str,
    *,
    lease: datetime,
    now: datetime,
    totals: domain.Totals,
    currency: str,
    lines: Sequence[Any] = (),
) -> bool:
    """The stock reserved: the order moves from `from_stage` to RESERVED (lease renewed) with its
    totals in `currency`, and `lines` (priced: product_id, sku, name, unit_price_cents, quantity) become its items,
    atomically. False, with nothing written, when someone else moved the order first."""
    values = {
        "order_id": order_id,
        "from_stage": str(from_stage),
        "to_stage": str(domain.Stage.RESERVED),
        "lease": lease,
        "now": now,
        "subtotal": totals.subtotal_cents,
        "tax": totals.tax_cents,
        "shipping": totals.shipping_cents,
        "total": totals.total_cents,
        "currency": currency,
    }
    item_ids = [new_id() for _ in lines]
    if db.is_postgres:
        rows = await db.write_one(
            RECORD_RESERVATION,
            **values,
            item_ids=item_ids,
            positions=list(range(len(lines))),
            product_ids=[line.product_id for line in lines],
            skus=[line.sku for line in lines],
            names=[line.name for line in lines],
            unit_prices=[line.unit_price_cents for line in lines],
            quantities=[line.quantity for line in lines],
        )
        return rows[0].moved == 1
    async with db.write() as tx:
        if await tx.execute(ADVANCE, **values) != 1:
            return False
        for position, (item_id, line) in enumerate(zip(item_ids, lines, strict=True)):
            await tx.execute(
                INSERT_ITEM,
                id=item_id,
                order_id=order_id,
                position=position,
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                unit_price_cents=line.unit_price_cents,
                quantity=line.quantity,
                line_total_cents=line.unit_price_cents * line.quantity,
            )
        await tx.execute(SET_TOTALS, **values)
    return True


async def record_outcome(
    tx: Transaction,
    order_id: str,
    from_stage: str,
    *,
    now: datetime,
    status: str,
    note: str,
    effects: Sequence[tuple[str, dict[str, Any]]],
    **outcome: Any,
) -> OrderView | None:
    """A checkout's final outcome, in the caller's transaction: the order moves from `from_stage` to
    DONE with its `status` and `outcome` (SET_OUTCOME's failure_code, payment_id, payment_status,
    brand, last4, captured), a history entry with `note`, and an outbox row per effect (kind,
    payload). The order as it now is with its lines and history, or None, with nothing written,
    when someone else moved it."""
    values = {"order_id": order_id, "from_stage": str(from_stage), "to_stage": str(domain.Stage.DONE), "now": now}
    if tx.is_postgres:
        row = await tx.one(
            RECORD_OUTCOME,
            **values,
            **outcome,
            status=status,
            note=note[:500],
            history_id=new_id(),
            outbox_ids=[new_id() for _ in effects],
            kinds=[str(kind) for kind, _ in effects],
            payloads=[json.dumps(payload) for _, payload in effects],
        )
        return None if row is None else _view_of(row)
    if await tx.execute(ADVANCE, **values, lease=None) != 1:
        return None
    finished = await tx.one(SET_OUTCOME, order_id=order_id, status=status, **outcome)
    await append_history(tx, order_id, status, note, now)
    for kind, payload in effects:
        await append_outbox(tx, order_id, kind, payload, now)
    return await view(tx, order_id, finished)


def _view_of(row: Any) -> OrderView:
    """RECORD_OUTCOME's row as the view a read gives: the order's columns, then one array per line
    field, then one per history field (NULL arrays: none)."""
    lines_at = len(_ORDER_FIELDS)
    history_at = lines_at + len(_ITEM_FIELDS)
    return OrderView(
        named_row(_ORDER_FIELDS, row[:lines_at]),
        _rows_of(_ITEM_FIELDS, row[lines_at:history_at]),
        _rows_of(_HISTORY_FIELDS, row[history_at:]),
    )


def _rows_of(fields: tuple[str, ...], arrays: Sequence[list | None]) -> list:
    if arrays[0] is None:
        return []
    return [named_row(fields, values) for values in zip(*arrays, strict=True)]


async def claim_outbox(db: Database, order_id: str, *, until: datetime, now: datetime) -> tuple[Any, list]:
    """Takes an order's outbox for one relay until `until`: the order row it locked and its pending
    rows in sequence, or (None, []) when another relay holds it or there is no such order. The lock
    is the column, not a transaction: on PostgreSQL the claim and the rows are one statement in
    autocommit; on SQLite the claim is its own statement and the rows are read after it."""
    if db.is_postgres:
        joined = await db.write_one(CLAIM_OUTBOX_WITH_PENDING, order_id=order_id, until=until, now=now)
        if not joined:
            return None, []
        split = len(_ORDER_FIELDS)
        pending = [named_row(_OUTBOX_FIELDS, row[split:]) for row in joined if row[split] is not None]
        return named_row(_ORDER_FIELDS, joined[0][:split]), pending
    claimed = await db.write_one(CLAIM_OUTBOX, order_id=order_id, until=until, now=now)
    if not claimed:
        return None, []
    return claimed[0], await db.read_all(PENDING_OUTBOX, order_id=order_id)


async def release_outbox(
    db: Database, order_id: str, *, until: datetime, done_ids: list[str], learned: dict[str, Any]
) -> None:
    """A relay's end, atomically: the rows it ran marked done, what their side effects learned about
    the order (`learned`: reservation_state, refunded_cents, payment_status), and the lock given back
    if it is still this relay's. One statement on PostgreSQL, one transaction on SQLite."""
    values = {
        "order_id": order_id,
        "until": until,
        "now": utcnow(),
        "reservation_state": learned.get("reservation_state"),
        "refunded_cents": learned.get("refunded_cents"),
        "payment_status": learned.get("payment_status"),
    }
    if db.is_postgres:
        await db.write_one(DONE_AND_RELEASE_OUTBOX, ids=done_ids, **values)
        return
    async with db.write() as tx:
        if done_ids:
            await tx.execute(OUTBOX_DONE, ids=done_ids, now=values["now"])
        await tx.execute(RELEASE_OUTBOX, **values)


async def record_pending(db: Database, **values: Any) -> Any:
    """A checkout's key (in progress), its order (PENDING) and first history entry, atomically
    (`values`: RECORD_PENDING's parameters); the order row as written (the saga starts from it).
    A key or order number already taken raises DUPLICATE_KEY with nothing recorded."""
    values["history_id"] = new_id()
    if db.is_postgres:
        return (await db.write_one(RECORD_PENDING, **values))[0]
    async with db.write() as tx:
        await tx.execute(INSERT_KEY, **values)
        await tx.execute(INSERT_ORDER, **values)
        await append_history(tx, values["order_id"], values["status"], values["note"], values["now"])
        return await order_row(tx, values["order_id"])


async def append_history(tx: Transaction, order_id: str, status: str, note: str, now: datetime) -> None:
    await tx.execute(
        INSERT_HISTORY, id=new_id(), order_id=order_id, same_order_id=order_id, status=status, note=note[:500], now=now
    )


async def append_outbox(tx: Transaction, order_id: str, kind: str, payload: dict[str, Any], now: datetime) -> None:
    await tx.execute(
        INSERT_OUTBOX,
        id=new_id(),
        order_id=order_id,
        same_order_id=order_id,
        kind=str(kind),
        payload=json.dumps(payload),
        now=now,
    )
