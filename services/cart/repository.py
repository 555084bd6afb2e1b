"""Queries of the cart service (SQLAlchemy Core, bound parameters; PostgreSQL and SQLite).

Every mutation first upserts the cart row (`touch_cart`), which both creates the cart on first
use and takes the cart row's lock, so writes to one cart are serialised and never deadlock.
Line increments are one atomic `INSERT ... ON CONFLICT (cart_id, product_id) DO UPDATE SET
quantity = quantity + n WHERE quantity + n <= cap`: concurrent adds never lose an update.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.cart.domain import Line, Owner
from services.cart.models import Cart, CartItem, CartRequest
from shop.lib.db import Database, ReadQuery, new_id


def _insert(session: AsyncSession, table):
    """INSERT with ON CONFLICT support for the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def touch_cart(session: AsyncSession, owner: Owner, now: datetime) -> str:
    """Creates the owner's cart if needed and marks it changed now (locks its row)."""
    stmt = _insert(session, Cart).values(
        id=owner.cart_id, user_id=owner.user_id, session_id=owner.session_id, created_at=now, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(index_elements=[Cart.id], set_={"updated_at": stmt.excluded.updated_at})
    await session.execute(stmt)
    return owner.cart_id


async def lock_cart(session: AsyncSession, cart_id: str) -> bool:
    """Locks an existing cart's row (PostgreSQL; SQLite writers are serialised anyway)."""
    row = await session.execute(select(Cart.id).where(Cart.id == cart_id).with_for_update())
    return row.first() is not None


# A cart's lines in the order they were added.
LINES = ReadQuery(
    "SELECT product_id, quantity FROM cart_items WHERE cart_id = :cart_id ORDER BY created_at, product_id",
    [CartItem.product_id, CartItem.quantity],
)


async def lines(session: AsyncSession, cart_id: str) -> list[Line]:
    """The lines, inside a write's transaction (they see its changes and its lock)."""
    rows = await session.execute(LINES.core, {"cart_id": cart_id})
    return [Line(product_id=row.product_id, quantity=row.quantity) for row in rows]


async def read_lines(db: Database, cart_id: str) -> list[Line]:
    """The lines on the lean read path (no transaction)."""
    return [Line(product_id=row.product_id, quantity=row.quantity) for row in await db.read_all(LINES, cart_id=cart_id)]


async def line_count(session: AsyncSession, cart_id: str) -> int:
    return int(await session.scalar(select(func.count()).select_from(CartItem).where(CartItem.cart_id == cart_id)))


async def line_quantity(session: AsyncSession, cart_id: str, product_id: str) -> int:
    value = await session.scalar(
        select(CartItem.quantity).where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
    )
    return int(value or 0)


async def add_quantity(
    session: AsyncSession, cart_id: str, product_id: str, quantity: int, cap: int, now: datetime
) -> int | None:
    """Adds `quantity` to the line atomically unless the result would exceed `cap`.
    Returns the line's new quantity, or None when refused (nothing changed).
    The caller has checked that `quantity <= cap` for a new line."""
    stmt = _insert(session, CartItem).values(
        id=new_id(), cart_id=cart_id, product_id=product_id, quantity=quantity, created_at=now, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[CartItem.cart_id, CartItem.product_id],
        set_={"quantity": CartItem.quantity + stmt.excluded.quantity, "updated_at": stmt.excluded.updated_at},
        where=(CartItem.quantity + stmt.excluded.quantity) <= cap,
    ).returning(CartItem.quantity)
    row = (await session.execute(stmt)).first()
    return None if row is None else int(row.quantity)


async def set_quantity(session: AsyncSession, cart_id: str, product_id: str, quantity: int, now: datetime) -> None:
    stmt = _insert(session, CartItem).values(
        id=new_id(), cart_id=cart_id, product_id=product_id, quantity=quantity, created_at=now, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[CartItem.cart_id, CartItem.product_id],
        set_={"quantity": stmt.excluded.quantity, "updated_at": stmt.excluded.updated_at},
    )
    await session.execute(stmt)


async def remove_line(session: AsyncSession, cart_id: str, product_id: str) -> bool:
    result = await session.execute(
        delete(CartItem).where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
    )
    return result.rowcount > 0


async def clear(session: AsyncSession, cart_id: str, now: datetime) -> int:
    """Empties the cart (the cart row stays, marked changed). Returns the number of lines removed."""
    result = await session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
    await session.execute(update(Cart).where(Cart.id == cart_id).values(updated_at=now))
    return result.rowcount


async def delete_cart(session: AsyncSession, cart_id: str) -> None:
    await session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
    await session.execute(delete(CartRequest).where(CartRequest.cart_id == cart_id))
    await session.execute(delete(Cart).where(Cart.id == cart_id))


async def delete_expired_guest_carts(session: AsyncSession, cutoff: datetime) -> int:
    """Deletes guest carts last changed before `cutoff` (their lines go by ON DELETE CASCADE).
    One statement: a guest cart changed concurrently (its row re-stamped) is not deleted."""
    result = await session.execute(
        delete(Cart).where(Cart.session_id.is_not(None), Cart.updated_at < cutoff)
    )
    return result.rowcount


async def request_fingerprint(session: AsyncSession, cart_id: str, request_id: str) -> str | None:
    """The fingerprint stored with an idempotency key of this cart, or None when it is new."""
    return await session.scalar(
        select(CartRequest.fingerprint).where(CartRequest.cart_id == cart_id, CartRequest.request_id == request_id)
    )


async def remember_request(
    session: AsyncSession, cart_id: str, request_id: str, fingerprint: str, now: datetime
) -> str | None:
    """Records an idempotency key; None when it is new, else the fingerprint already stored."""
    stmt = _insert(session, CartRequest).values(
        id=new_id(), cart_id=cart_id, request_id=request_id, fingerprint=fingerprint, created_at=now
    )
    stmt = stmt.on_conflict_do_nothing(index_elements=[CartRequest.cart_id, CartRequest.request_id])
    result = await session.execute(stmt.returning(CartRequest.id))
    if result.first() is not None:
        return None
    return await request_fingerprint(session, cart_id, request_id)


async def delete_old_requests(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(CartRequest).where(CartRequest.created_at < cutoff))
    return result.rowcount
