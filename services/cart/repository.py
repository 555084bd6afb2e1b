"""Queries of the cart service: SQL written once (`shop.lib.db.Query`), the same text on PostgreSQL
and SQLite where the dialects agree. Writes run inside `db.write()` (one short transaction of
prepared statements); reads outside a write use `db.read_all` (no transaction).

Every mutation first upserts the cart row (`touch_cart`), which both creates the cart on first
use and takes the cart row's lock, so writes to one cart are serialised and never deadlock.
Line increments are one atomic `INSERT ... ON CONFLICT (cart_id, product_id) DO UPDATE SET
quantity = quantity + n WHERE quantity + n <= cap`: concurrent adds never lose an update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, column

from services.cart.domain import TAKEN, Line, Owner
from services.cart.models import CartCheckout, CartItem, CartRequest
from shop.lib.db import Database, Query, Transaction, UTCDateTime, new_id

_NOW = {"now": UTCDateTime()}

TOUCH_CART = Query(
    "INSERT INTO carts (id, user_id, session_id, created_at, updated_at) "
    "VALUES (:id, :user_id, :session_id, :now, :now) "
    "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
    types=_NOW,
)
LOCK_CART = Query(
    "SELECT id FROM carts WHERE id = :cart_id",
    [column("id")],
    postgres_sql="SELECT id FROM carts WHERE id = :cart_id FOR UPDATE",  # SQLite writers are serialised anyway
)
# A cart's lines in the order they were added.
LINES = Query(
    "SELECT product_id, quantity FROM cart_items WHERE cart_id = :cart_id ORDER BY created_at, product_id",
    [CartItem.product_id, CartItem.quantity],
)
# How many lines the cart has, and how many of this product it holds already (one round trip).
ROOM = Query(
    "SELECT count(*) AS line_count, "
    "coalesce(sum(CASE WHEN product_id = :product_id THEN quantity ELSE 0 END), 0) AS existing "
    "FROM cart_items WHERE cart_id = :cart_id",
    [column("line_count", Integer), column("existing", Integer)],
)
LINE_QUANTITY = Query(
    "SELECT quantity FROM cart_items WHERE cart_id = :cart_id AND product_id = :product_id", [CartItem.quantity]
)
ADD_QUANTITY = Query(
    "INSERT INTO cart_items (id, cart_id, product_id, quantity, created_at, updated_at) "
    "VALUES (:id, :cart_id, :product_id, :quantity, :now, :now) "
    "ON CONFLICT (cart_id, product_id) DO UPDATE "
    "SET quantity = cart_items.quantity + excluded.quantity, updated_at = excluded.updated_at "
    "WHERE cart_items.quantity + excluded.quantity <= :cap "
    "RETURNING quantity",
    [CartItem.quantity],
    types=_NOW,
)
SET_QUANTITY = Query(
    "INSERT INTO cart_items (id, cart_id, product_id, quantity, created_at, updated_at) "
    "VALUES (:id, :cart_id, :product_id, :quantity, :now, :now) "
    "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = excluded.quantity, updated_at = excluded.updated_at",
    types=_NOW,
)
REMOVE_LINE = Query("DELETE FROM cart_items WHERE cart_id = :cart_id AND product_id = :product_id")
CLEAR_LINES = Query("DELETE FROM cart_items WHERE cart_id = :cart_id")
STAMP_CART = Query("UPDATE carts SET updated_at = :now WHERE id = :cart_id", types=_NOW)
DELETE_REQUESTS = Query("DELETE FROM cart_requests WHERE cart_id = :cart_id")
DELETE_CART = Query("DELETE FROM carts WHERE id = :cart_id")
# One statement: a guest cart changed concurrently (its row re-stamped) is not deleted.
DELETE_EXPIRED_GUEST_CARTS = Query(
    "DELETE FROM carts WHERE session_id IS NOT NULL AND updated_at < :cutoff", types={"cutoff": UTCDateTime()}
)
REQUEST_FINGERPRINT = Query(
    "SELECT fingerprint FROM cart_requests WHERE cart_id = :cart_id AND request_id = :request_id",
    [CartRequest.fingerprint],
)
REMEMBER_REQUEST = Query(
    "INSERT INTO cart_requests (id, cart_id, request_id, fingerprint, created_at) "
    "VALUES (:id, :cart_id, :request_id, :fingerprint, :now) "
    "ON CONFLICT (cart_id, request_id) DO NOTHING RETURNING id",
    [CartRequest.id],
    types=_NOW,
)
# CheckoutCart / RestoreCart. `lines` is bound as JSON text (PostgreSQL casts it to json from the
# column; SQLite stores the text) and read back as a list through the column's JSON type.
_CHECKOUT_COLUMNS = [
    CartCheckout.cart_id,
    CartCheckout.user_id,
    CartCheckout.session_id,
    CartCheckout.lines,
    CartCheckout.state,
]
RECORD_CHECKOUT = Query(
    "INSERT INTO cart_checkouts (checkout_id, cart_id, user_id, session_id, lines, state, created_at) "
    "VALUES (:checkout_id, :cart_id, :user_id, :session_id, :lines, :state, :now) "
    "ON CONFLICT (checkout_id) DO NOTHING RETURNING checkout_id",
    [CartCheckout.checkout_id],
    types=_NOW,
)
# A checkout taking the cart, on PostgreSQL: recorded and, when this call recorded it and it took
# lines, the cart emptied and stamped; one statement (SQLite: RECORD_CHECKOUT, CLEAR_LINES, STAMP_CART).
TAKE_CART = Query(
    "WITH recorded AS (INSERT INTO cart_checkouts (checkout_id, cart_id, user_id, session_id, lines, state, "
    "created_at) VALUES (:checkout_id, :cart_id, :user_id, :session_id, :lines, :state, :now) "
    "ON CONFLICT (checkout_id) DO NOTHING RETURNING checkout_id), "
    "cleared AS (DELETE FROM cart_items WHERE cart_id = :cart_id AND :clear AND EXISTS (SELECT 1 FROM recorded)), "
    "stamped AS (UPDATE carts SET updated_at = :now WHERE id = :cart_id AND :clear "
    "AND EXISTS (SELECT 1 FROM recorded)) "
    "SELECT checkout_id FROM recorded",
    [CartCheckout.checkout_id],
)
CHECKOUT = Query(
    "SELECT cart_id, user_id, session_id, lines, state FROM cart_checkouts WHERE checkout_id = :checkout_id",
    _CHECKOUT_COLUMNS,
)
LOCK_CHECKOUT = Query(
    "SELECT cart_id, user_id, session_id, lines, state FROM cart_checkouts WHERE checkout_id = :checkout_id",
    _CHECKOUT_COLUMNS,
    postgres_sql="SELECT cart_id, user_id, session_id, lines, state FROM cart_checkouts "
    "WHERE checkout_id = :checkout_id FOR UPDATE",
)
MARK_CHECKOUT_RESTORED = Query(
    "UPDATE cart_checkouts SET state = 'restored' WHERE checkout_id = :checkout_id AND state = 'taken'"
)
DELETE_OLD_CHECKOUTS = Query("DELETE FROM cart_checkouts WHERE created_at < :cutoff", types={"cutoff": UTCDateTime()})
DELETE_OLD_REQUESTS = Query("DELETE FROM cart_requests WHERE created_at < :cutoff", types={"cutoff": UTCDateTime()})


async def touch_cart(tx: Transaction, owner: Owner, now: datetime) -> str:
    """Creates the owner's cart if needed and marks it changed now (locks its row)."""
    await tx.execute(TOUCH_CART, id=owner.cart_id, user_id=owner.user_id, session_id=owner.session_id, now=now)
    return owner.cart_id


async def lock_cart(tx: Transaction, cart_id: str) -> bool:
    """Locks an existing cart's row (PostgreSQL; SQLite writers are serialised anyway)."""
    return await tx.one(LOCK_CART, cart_id=cart_id) is not None


def _lines(rows: list) -> list[Line]:
    return [Line(product_id=row.product_id, quantity=row.quantity) for row in rows]


async def lines(tx: Transaction, cart_id: str) -> list[Line]:
    """The lines, inside a write's transaction (they see its changes and its lock)."""
    return _lines(await tx.all(LINES, cart_id=cart_id))


async def read_lines(db: Database, cart_id: str) -> list[Line]:
    """The lines on the lean read path (no transaction)."""
    return _lines(await db.read_all(LINES, cart_id=cart_id))


async def room(tx: Transaction, cart_id: str, product_id: str) -> tuple[int, int]:
    """(the cart's line count, the quantity of `product_id` it holds already)."""
    row = await tx.one(ROOM, cart_id=cart_id, product_id=product_id)
    return int(row.line_count), int(row.existing)


async def line_quantity(tx: Transaction, cart_id: str, product_id: str) -> int:
    row = await tx.one(LINE_QUANTITY, cart_id=cart_id, product_id=product_id)
    return int(row.quantity) if row is not None else 0


async def add_quantity(
    tx: Transaction, cart_id: str, product_id: str, quantity: int, cap: int, now: datetime
) -> int | None:
    """Adds `quantity` to the line atomically unless the result would exceed `cap`.
    Returns the line's new quantity, or None when refused (nothing changed).
    The caller has checked that `quantity <= cap` for a new line."""
    row = await tx.one(
        ADD_QUANTITY, id=new_id(), cart_id=cart_id, product_id=product_id, quantity=quantity, now=now, cap=cap
    )
    return None if row is None else int(row.quantity)


async def set_quantity(tx: Transaction, cart_id: str, product_id: str, quantity: int, now: datetime) -> None:
    await tx.execute(SET_QUANTITY, id=new_id(), cart_id=cart_id, product_id=product_id, quantity=quantity, now=now)


async def remove_line(tx: Transaction, cart_id: str, product_id: str) -> bool:
    return await tx.execute(REMOVE_LINE, cart_id=cart_id, product_id=product_id) > 0


async def clear(tx: Transaction, cart_id: str, now: datetime) -> int:
    """Empties the cart (the cart row stays, marked changed). Returns the number of lines removed."""
    removed = await tx.execute(CLEAR_LINES, cart_id=cart_id)
    await tx.execute(STAMP_CART, cart_id=cart_id, now=now)
    return removed


async def delete_cart(tx: Transaction, cart_id: str) -> None:
    await tx.execute(CLEAR_LINES, cart_id=cart_id)
    await tx.execute(DELETE_REQUESTS, cart_id=cart_id)
    await tx.execute(DELETE_CART, cart_id=cart_id)


async def delete_expired_guest_carts(tx: Transaction, cutoff: datetime) -> int:
    """Deletes guest carts last changed before `cutoff` (their lines go by ON DELETE CASCADE)."""
    return await tx.execute(DELETE_EXPIRED_GUEST_CARTS, cutoff=cutoff)


async def request_fingerprint(tx: Transaction, cart_id: str, request_id: str) -> str | None:
    """The fingerprint stored with an idempotency key of this cart, or None when it is new."""
    row = await tx.one(REQUEST_FINGERPRINT, cart_id=cart_id, request_id=request_id)
    return None if row is None else row.fingerprint


async def read_request_fingerprint(db: Database, cart_id: str, request_id: str) -> str | None:
    """The same, on the lean read path (no transaction)."""
    row = await db.read_one(REQUEST_FINGERPRINT, cart_id=cart_id, request_id=request_id)
    return None if row is None else row.fingerprint


async def remember_request(
    tx: Transaction, cart_id: str, request_id: str, fingerprint: str, now: datetime
) -> str | None:
    """Records an idempotency key; None when it is new, else the fingerprint already stored."""
    if (
        await tx.one(
            REMEMBER_REQUEST, id=new_id(), cart_id=cart_id, request_id=request_id, fingerprint=fingerprint, now=now
        )
        is not None
    ):
        return None
    return await request_fingerprint(tx, cart_id, request_id)


async def delete_old_requests(tx: Transaction, cutoff: datetime) -> int:
    return await tx.execute(DELETE_OLD_REQUESTS, cutoff=cutoff)


# -- checkouts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """A recorded CheckoutCart: whose cart, the lines it took, `taken` or `restored`."""

    cart_id: str | None
    owner: Owner | None
    lines: list[Line]
    state: str


def _checkout(row) -> Checkout | None:
    if row is None:
        return None
    raw = json.loads(row.lines) if isinstance(row.lines, str) else row.lines
    owner = None
    if row.user_id is not None or row.session_id is not None:
        owner = Owner(user_id=row.user_id, session_id=row.session_id)
    return Checkout(
        cart_id=row.cart_id,
        owner=owner,
        lines=[Line(product_id=item["product_id"], quantity=int(item["quantity"])) for item in raw],
        state=row.state,
    )


def _lines_payload(lines: list[Line]) -> str:
    return json.dumps([{"product_id": line.product_id, "quantity": line.quantity} for line in lines])


async def record_checkout(
    tx: Transaction, checkout_id: str, owner: Owner | None, lines: list[Line], state: str, now: datetime
) -> bool:
    """Records a checkout; False (nothing written) when the id is recorded already. A concurrent
    insert of the same id waits for that transaction, so the loser then reads the winner's row."""
    row = await tx.one(
        RECORD_CHECKOUT,
        checkout_id=checkout_id,
        cart_id=owner.cart_id if owner else None,
        user_id=owner.user_id if owner else None,
        session_id=owner.session_id if owner else None,
        lines=_lines_payload(lines),
        state=state,
        now=now,
    )
    return row is not None


async def take_cart(tx: Transaction, checkout_id: str, owner: Owner, lines: list[Line], now: datetime) -> bool:
    """Records `checkout_id` as having taken `lines` and, if it took any, empties the cart (its row
    stays, marked changed); False, with nothing written, when the id is recorded already."""
    if not tx.is_postgres:
        if not await record_checkout(tx, checkout_id, owner, lines, TAKEN, now):
            return False
        if lines:
            await clear(tx, owner.cart_id, now)
        return True
    row = await tx.one(
        TAKE_CART,
        checkout_id=checkout_id,
        cart_id=owner.cart_id,
        user_id=owner.user_id,
        session_id=owner.session_id,
        lines=_lines_payload(lines),
        state=TAKEN,
        now=now,
        clear=bool(lines),
    )
    return row is not None


async def checkout(tx: Transaction, checkout_id: str) -> Checkout | None:
    return _checkout(await tx.one(CHECKOUT, checkout_id=checkout_id))


async def lock_checkout(tx: Transaction, checkout_id: str) -> Checkout | None:
    """The checkout's record, its row locked (PostgreSQL): one restore at a time."""
    return _checkout(await tx.one(LOCK_CHECKOUT, checkout_id=checkout_id))


async def mark_checkout_restored(tx: Transaction, checkout_id: str) -> bool:
    return await tx.execute(MARK_CHECKOUT_RESTORED, checkout_id=checkout_id) > 0


async def delete_old_checkouts(tx: Transaction, cutoff: datetime) -> int:
    return await tx.execute(DELETE_OLD_CHECKOUTS, cutoff=cutoff)
