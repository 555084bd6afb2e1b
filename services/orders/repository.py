"""Queries of the orders service (SQLAlchemy Core/ORM with bound parameters only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import domain
from services.orders.models import IdempotencyKey, Order, OrderHistory, OrderItem, OutboxEntry
from shop.lib.db import utcnow


@dataclass
class OrderView:
    """An order with its lines and history (what the API shows)."""

    order: Order
    items: list[OrderItem]
    history: list[OrderHistory]


async def get_order(session: AsyncSession, order_id: str, *, for_update: bool = False) -> Order | None:
    statement = select(Order).where(Order.id == order_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def load_view(session: AsyncSession, order: Order) -> OrderView:
    items = (
        await session.execute(select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.position))
    ).scalars().all()
    history = (
        await session.execute(
            select(OrderHistory).where(OrderHistory.order_id == order.id).order_by(OrderHistory.seq)
        )
    ).scalars().all()
    return OrderView(order, list(items), list(history))


async def get_view(session: AsyncSession, order_id: str) -> OrderView | None:
    order = await get_order(session, order_id)
    return None if order is None else await load_view(session, order)


async def history_since(session: AsyncSession, order_id: str, after_seq: int) -> list[OrderHistory]:
    rows = await session.execute(
        select(OrderHistory)
        .where(OrderHistory.order_id == order_id, OrderHistory.seq > after_seq)
        .order_by(OrderHistory.seq)
    )
    return list(rows.scalars().all())


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
    session.add(OutboxEntry(order_id=order_id, seq=last + 1, kind=kind, payload=payload or {}, state="pending"))


async def set_status(
    session: AsyncSession, order: Order, status: str, note: str = "", *, now: datetime | None = None
) -> None:
    """A status change: the row, its history entry, the version (callers hold the row lock)."""
    now = now or utcnow()
    order.status = status
    order.updated_at = now
    order.version += 1
    await add_history(session, order.id, status, note, now)


async def number_taken(session: AsyncSession, number: str) -> bool:
    return (await session.execute(select(Order.id).where(Order.number == number))).first() is not None


# -- leases ------------------------------------------------------------------------------------

async def claim_lease(session: AsyncSession, order_id: str, seconds: float, *, force: bool = False) -> bool:
    """Takes the saga lease of an unfinished order unless someone else holds it."""
    now = utcnow()
    condition = [Order.id == order_id, Order.stage.in_(domain.UNFINISHED_STAGES)]
    if not force:
        condition.append(or_(Order.lease_until.is_(None), Order.lease_until < now))
    result = await session.execute(
        update(Order).where(*condition).values(lease_until=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


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


async def claim_outbox(session: AsyncSession, order_id: str, seconds: float) -> datetime | None:
    """Locks an order's outbox rows for one relay; returns the lock's expiry, or None if taken."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    result = await session.execute(
        update(Order)
        .where(Order.id == order_id, or_(Order.outbox_lock_until.is_(None), Order.outbox_lock_until < now))
        .values(outbox_lock_until=until)
    )
    return until if result.rowcount == 1 else None


async def release_outbox(session: AsyncSession, order_id: str, until: datetime) -> None:
    await session.execute(
        update(Order).where(Order.id == order_id, Order.outbox_lock_until == until).values(outbox_lock_until=None)
    )


async def pending_outbox(session: AsyncSession, order_id: str) -> list[OutboxEntry]:
    rows = await session.execute(
        select(OutboxEntry)
        .where(OutboxEntry.order_id == order_id, OutboxEntry.state == "pending")
        .order_by(OutboxEntry.seq)
    )
    return list(rows.scalars().all())


# -- idempotency keys --------------------------------------------------------------------------

async def get_idempotency(
    session: AsyncSession, user_id: str, key: str, *, for_update: bool = False
) -> IdempotencyKey | None:
    statement = select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def idempotency_for_order(session: AsyncSession, order_id: str) -> IdempotencyKey | None:
    statement = select(IdempotencyKey).where(
        IdempotencyKey.order_id == order_id, IdempotencyKey.operation == "create_order"
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def purge_idempotency(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < older_than))
    return result.rowcount or 0


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
        await session.execute(
            select(OrderHistory).where(OrderHistory.order_id.in_(ids)).order_by(OrderHistory.seq)
        )
    ).scalars():
        history[entry.order_id].append(entry)
    return [OrderView(order, items[order.id], history[order.id]) for order in orders]
