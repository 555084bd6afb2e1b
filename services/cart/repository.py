"""Queries of the cart service: SQL written once (`shop.lib.db.Query`), the same text on PostgreSQL
and SQLite where the dialects agree. Writes run inside `db.write()` (one short transaction of
prepared statements); reads outside a write use `db.read_all` (no transaction).

Every mutation first stamps the cart row (`touch_cart`), which both creates the cart on first
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
from services.cart.models import Cart, CartCheckout, CartItem, CartRequest
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
# Before an add (no transaction): the cart's lines in LINES' order and, when the add carries a key,
# the fingerprint stored with that key (a replay), in one round trip. The key's row has no product.
LINES_AND_REQUEST = Query(
    "SELECT product_id, quantity, NULL AS fingerprint, created_at FROM cart_items WHERE cart_id = :cart_id "
    "UNION ALL SELECT NULL, NULL, fingerprint, NULL FROM cart_requests "
    "WHERE cart_id = :cart_id AND request_id = :request_id "
    "ORDER BY 4, 1",
    [CartItem.product_id, CartItem.quantity, CartRequest.fingerprint, CartItem.created_at],
)
# PostgreSQL's touch (see `touch_cart`): the cart stamped and its row locked; no row when it does
# not exist. Creating it: every unique column an arbiter, so concurrent creations wait, not fail.
STAMP_AND_LOCK = Query("UPDATE carts SET updated_at = :now WHERE id = :cart_id RETURNING id", [Cart.id], types=_NOW)
CREATE_CART = Query(
    "INSERT INTO carts (id, user_id, session_id, created_at, updated_at) "
    "VALUES (:id, :user_id, :session_id, :now, :now) ON CONFLICT DO NOTHING",
    types=_NOW,
)
# An add's first statement on PostgreSQL: STAMP_AND_LOCK and the add's key remembered; `cart_id` is
# NULL when the cart does not exist (nothing written), `id` when the key was there already.
STAMP_AND_REMEMBER = Query(
    "WITH touched AS (UPDATE carts SET updated_at = :now WHERE id = :cart_id RETURNING id), "
    "remembered AS (INSERT INTO cart_requests (id, cart_id, request_id, fingerprint, created_at) "
    "SELECT :id, touched.id, :request_id, :fingerprint, :now FROM touched "
    "ON CONFLICT (cart_id, request_id) DO NOTHING RETURNING id) "
    "SELECT (SELECT id FROM touched) AS cart_id, (SELECT id FROM remembered) AS id",
    [CartRequest.cart_id, CartRequest.id],
)
# The add itself on PostgreSQL, once the cart's row is locked (so this statement's snapshot holds
# every earlier write to the cart): room for a new line, the capped increment and the lines after
# it, in one statement. One row per line after the add, each with the room figures; when the add is
# refused, one row of room figures and no line.
ADD_TO_LOCKED_CART = Query(
    "WITH room AS (SELECT count(*) AS line_count, "
    "coalesce(sum(CASE WHEN product_id = :product_id THEN quantity ELSE 0 END), 0) AS existing "
    "FROM cart_items WHERE cart_id = :cart_id), "
    "added AS (INSERT INTO cart_items (id, cart_id, product_id, quantity, created_at, updated_at) "
    "SELECT :id, :cart_id, :product_id, :quantity, :now, :now FROM room "
    "WHERE room.existing > 0 OR room.line_count < :max_lines "
    "ON CONFLICT (cart_id, product_id) DO UPDATE "
    "SET quantity = cart_items.quantity + excluded.quantity, updated_at = excluded.updated_at "
    "WHERE cart_items.quantity + excluded.quantity <= :cap "
    "RETURNING product_id, quantity, created_at), "
    "after_add AS (SELECT product_id, quantity, created_at FROM cart_items "
    "WHERE cart_id = :cart_id AND product_id <> :product_id AND EXISTS (SELECT 1 FROM added) "
    "UNION ALL SELECT product_id, quantity, created_at FROM added) "
    "SELECT room.line_count, room.existing, after_add.product_id, after_add.quantity "
    "FROM room LEFT JOIN after_add ON true ORDER BY after_add.created_at, after_add.product_id",
    [column("line_count", Integer), column("existing", Integer), CartItem.product_id, CartItem.quantity],
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
    """Creates the owner's cart if needed and marks it changed now (locks its row).

    On PostgreSQL the upsert (TOUCH_CART) races when two first writes create one cart at once: its
    ON CONFLICT covers the id, not the owner's own unique column, so one of them failed with a
    unique violation or a deadlock. There the cart is stamped (the common case, one statement) and
    created only when missing, by an insert that waits for a concurrent one instead of failing.
    SQLite serialises writers: the upsert cannot race."""
    if not tx.is_postgres:
        await tx.execute(TOUCH_CART, id=owner.cart_id, user_id=owner.user_id, session_id=owner.session_id, now=now)
        return owner.cart_id
    if await tx.one(STAMP_AND_LOCK, cart_id=owner.cart_id, now=now) is None:
        await tx.execute(CREATE_CART, id=owner.cart_id, user_id=owner.user_id, session_id=owner.session_id, now=now)
        await tx.one(STAMP_AND_LOCK, cart_id=owner.cart_id, now=now)
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


async def lines_and_request(db: Database, cart_id: str, request_id: str | None) -> tuple[list[Line], str | None]:
    """Before an add, on the lean read path: the cart's lines, and the fingerprint stored with
    `request_id` (None when the key is new or there is none)."""
    rows = await db.read_all(LINES_AND_REQUEST, cart_id=cart_id, request_id=request_id)
    stored = next((row.fingerprint for row in rows if row.fingerprint is not None), None)
    return _lines([row for row in rows if row.product_id is not None]), stored


async def touch_and_remember(
    tx: Transaction, owner: Owner, request_id: str | None, fingerprint: str, now: datetime
) -> str | None:
    """`touch_cart` (the cart's row locked), then the add's key recorded when it has one: None when
    the key is new (or absent), else the fingerprint stored with it (a concurrent repeat got there
    first). On PostgreSQL one statement when the cart exists."""
    if request_id is None or not tx.is_postgres:
        await touch_cart(tx, owner, now)
        return None if request_id is None else await remember_request(tx, owner.cart_id, request_id, fingerprint, now)
    row = await tx.one(
        STAMP_AND_REMEMBER,
        id=new_id(),
        cart_id=owner.cart_id,
        request_id=request_id,
        fingerprint=fingerprint,
        now=now,
    )
    if row.cart_id is None:  # the cart's first write: `touch_cart` creates it, then the key alone
        await touch_cart(tx, owner, now)
        return await remember_request(tx, owner.cart_id, request_id, fingerprint, now)
    return None if row.id is not None else await request_fingerprint(tx, owner.cart_id, request_id)


@dataclass(frozen=True)
class Added:
    """What an add found under the cart's lock: its line count and the product's quantity before,
    and the lines after the add (None when refused: no room for a new line, or over `cap`)."""

    line_count: int
    existing: int
    lines: list[Line] | None


async def add_line(
    tx: Transaction, cart_id: str, product_id: str, quantity: int, cap: int, max_lines: int, now: datetime
) -> Added:
    """Adds `quantity` to the product's line in the locked cart, when a new line has room (fewer
    than `max_lines`) and the line stays within `cap`; nothing changes otherwise. One statement on
    PostgreSQL; on SQLite `room`, `add_quantity`, `lines`."""
    if not tx.is_postgres:
        line_count, existing = await room(tx, cart_id, product_id)
        if not existing and line_count >= max_lines:
            return Added(line_count, existing, None)
        if await add_quantity(tx, cart_id, product_id, quantity, cap, now) is None:
            return Added(line_count, existing, None)
        return Added(line_count, existing, await lines(tx, cart_id))
    rows = await tx.all(
        ADD_TO_LOCKED_CART,
        id=new_id(),
        cart_id=cart_id,
        product_id=product_id,
        quantity=quantity,
        cap=cap,
        max_lines=max_lines,
        now=now,
    )
    after = [row for row in rows if row.product_id is not None]
    return Added(int(rows[0].line_count), int(rows[0].existing), _lines(after) if after else None)


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
