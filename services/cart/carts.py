"""Use cases of the buyer's cart: GetCart, AddCartItem, SetCartItemQuantity, RemoveCartItem,
ClearCart, MergeCarts.

Each write is one `db.write()` transaction (lean prepared statements, `repository.py`) that opens
by locking the cart's row, so writes to one cart are serialised; a refusal raised inside it rolls
everything back. Reads (`db.read_all`) open no transaction. Every answer is the cart priced now
with ONE `BatchGetProducts` call. `runtime` is the service's `server.Runtime` (settings, db,
clients). The rules (owners, quantities, pricing, merge) are `domain.py`'s.
"""

from __future__ import annotations

from datetime import datetime

from services.cart import domain, repository
from services.cart.domain import Line, Owner, PricedCart, ProductInfo
from services.cart.mapping import product_info
from shop.catalog.v1 import catalog_pb2
from shop.lib.db import Transaction, utcnow
from shop.lib.errors import Aborted, NotFound
from shop.lib.idempotency import check_replay

# -- pricing ----------------------------------------------------------------------------------------


async def products(
    runtime, product_ids: list[str], known: dict[str, ProductInfo] | None = None
) -> dict[str, ProductInfo]:
    """The catalog's current data for these products, in ONE BatchGetProducts call (any status;
    missing ids are simply absent). `known`: fetched moments ago in the same RPC, not asked again."""
    known = known or {}
    product_ids = [pid for pid in product_ids if pid not in known]
    if not product_ids:
        return dict(known)
    response = await runtime.clients.catalog.BatchGetProducts(
        catalog_pb2.BatchGetProductsRequest(product_ids=sorted(set(product_ids)))
    )
    return {**known, **{product.id: product_info(product) for product in response.products}}


async def priced(
    runtime, owner: Owner, known: dict[str, ProductInfo] | None = None, lines: list[Line] | None = None
) -> PricedCart:
    """The cart priced now. `lines` read by the write that just ended are not read again."""
    if lines is None:
        lines = await repository.read_lines(runtime.db, owner.cart_id)
    catalog = await products(runtime, [line.product_id for line in lines], known)
    return domain.price_cart(owner.cart_id, lines, catalog, runtime.settings.currency)


# -- reads and writes -------------------------------------------------------------------------------


async def get_cart(runtime, owner: Owner) -> PricedCart:
    return await priced(runtime, owner)


async def add_item(
    runtime, owner: Owner, product_id: str, quantity: int, request_id: str | None
) -> tuple[PricedCart, bool]:
    """Adds `quantity` to the product's line; with a `request_id` (idempotency key) a repeat adds
    nothing and answers the cart `replayed`. The key is recorded in the add's own transaction, so a
    refused add does not use it up. On PostgreSQL: one read, one catalog call, then BEGIN, two
    statements (`repository.touch_and_remember`, `repository.add_line`), COMMIT."""
    fingerprint = domain.add_fingerprint(product_id, quantity)
    lines_before, stored = await repository.lines_and_request(runtime.db, owner.cart_id, request_id)
    if stored is not None:  # a repeat: nothing is added again
        check_replay(stored, fingerprint)
        return await priced(runtime, owner, lines=lines_before), True
    # One catalog call prices the whole answer: the product added and the lines already there.
    catalog = await products(runtime, [product_id, *(line.product_id for line in lines_before)])
    product = domain.check_can_hold(catalog.get(product_id), product_id, quantity, runtime.settings.currency)
    now = utcnow()
    lines: list[Line] | None = None
    async with runtime.db.write() as tx:
        # Locks the cart (one writer at a time) and records the key.
        stored = await repository.touch_and_remember(tx, owner, request_id, fingerprint, now)
        if stored is not None:  # the same key won a race with this request
            check_replay(stored, fingerprint)
        else:
            max_lines = runtime.settings.max_cart_lines
            added = await repository.add_line(
                tx, owner.cart_id, product_id, quantity, domain.line_cap(product), max_lines, now
            )
            if added.lines is None:  # raising rolls back: nothing changed, the key is not kept
                if not added.existing:
                    domain.check_room_for_new_line(added.line_count, max_lines)
                raise domain.add_refusal(added.existing, quantity, product)
            lines = added.lines  # under the cart's lock: exactly this add's result
    return await priced(runtime, owner, catalog, lines), stored is not None


async def set_quantity(runtime, owner: Owner, product_id: str, quantity: int) -> PricedCart:
    """Sets the line (creating it if needed); 0 removes it."""
    if quantity == 0:
        return await remove_item(runtime, owner, product_id)
    catalog = await products(runtime, [product_id])
    domain.check_can_hold(catalog.get(product_id), product_id, quantity, runtime.settings.currency)
    now = utcnow()
    async with runtime.db.write() as tx:
        cart_id = await repository.touch_cart(tx, owner, now)
        await _check_room(runtime, tx, cart_id, product_id)
        await repository.set_quantity(tx, cart_id, product_id, quantity, now)
    return await priced(runtime, owner, catalog)


async def remove_item(runtime, owner: Owner, product_id: str) -> PricedCart:
    now = utcnow()
    async with runtime.db.write() as tx:
        if not await repository.lock_cart(tx, owner.cart_id) or not await repository.remove_line(
            tx, owner.cart_id, product_id
        ):
            raise NotFound(
                "This product is not in the cart.", code="CART_ITEM_NOT_FOUND", details={"productId": product_id}
            )
        await repository.touch_cart(tx, owner, now)
    return await priced(runtime, owner)


async def clear_cart(runtime, owner: Owner) -> None:
    """Empties the cart; a cart that does not exist is fine (nothing is created)."""
    async with runtime.db.write() as tx:
        if await repository.lock_cart(tx, owner.cart_id):
            await repository.clear(tx, owner.cart_id, utcnow())


async def merge_guest_cart(runtime, owner: Owner, guest: Owner) -> PricedCart:
    """Adds the guest cart's lines into the user's cart (`domain.merged_quantity`) and deletes the
    guest cart, in one transaction. A line added to the guest cart meanwhile is CART_CHANGED."""
    guest_lines = await repository.read_lines(runtime.db, guest.cart_id)
    if not guest_lines:
        return await priced(runtime, owner)
    priced_ids = {line.product_id for line in guest_lines}
    catalog = await products(runtime, list(priced_ids))
    now = utcnow()
    async with runtime.db.write() as tx:
        cart_id = await repository.touch_cart(tx, owner, now)  # the user's cart, locked first
        if await repository.lock_cart(tx, guest.cart_id):
            guest_lines = await repository.lines(tx, guest.cart_id)
            if any(line.product_id not in priced_ids for line in guest_lines):
                # A line was added to the guest cart since we priced it; the client may retry.
                raise Aborted("The guest cart changed during the merge; try again.", code="CART_CHANGED")
            await _merge_lines(runtime, tx, cart_id, guest_lines, catalog, now)
            await repository.delete_cart(tx, guest.cart_id)
    return await priced(runtime, owner)


# -- inside a write's transaction -------------------------------------------------------------------


async def _check_room(runtime, tx: Transaction, cart_id: str, product_id: str) -> None:
    """A new line needs room in the cart (the cart row is locked: the count is stable)."""
    line_count, existing = await repository.room(tx, cart_id, product_id)
    if not existing:
        domain.check_room_for_new_line(line_count, runtime.settings.max_cart_lines)


async def _merge_lines(
    runtime, tx: Transaction, cart_id: str, guest_lines: list[Line], catalog: dict[str, ProductInfo], now: datetime
) -> None:
    """Each guest line merged into the user's cart; lines that cannot be sold, or do not fit in a
    full cart, are dropped."""
    existing = {line.product_id: line.quantity for line in await repository.lines(tx, cart_id)}
    line_count = len(existing)
    for line in guest_lines:
        current = existing.get(line.product_id, 0)
        merged = domain.merged_quantity(current, line.quantity, catalog.get(line.product_id), runtime.settings.currency)
        if merged is None or merged == current:
            continue
        if not current:
            if line_count >= runtime.settings.max_cart_lines:
                continue  # the user's cart is full: the guest line is dropped
            line_count += 1
        await repository.set_quantity(tx, cart_id, line.product_id, merged, now)
