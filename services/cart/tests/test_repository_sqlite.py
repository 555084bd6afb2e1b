"""The cart's queries on SQLite (the `make run` database), migrated by its Alembic revisions:
atomic capped increments under concurrency, cascade deletes, and the guest-cart sweep.
(The same queries run on PostgreSQL in the integration tests.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from services.cart import repository
from services.cart.config import CartSettings
from services.cart.domain import Line, Owner
from services.cart.models import Cart, CartItem
from services.cart.server import MIGRATIONS_DIR, Runtime
from shop.lib.db import Database, utcnow
from shop.lib.migrations import upgrade_async


@pytest_asyncio.fixture
async def db(tmp_path):
    url = f"sqlite:///{tmp_path}/cart.db"
    await upgrade_async(MIGRATIONS_DIR, url)
    database = Database(url)
    yield database
    await database.dispose()


async def add(db: Database, owner: Owner, product_id: str, quantity: int, cap: int) -> int | None:
    async with db.write() as tx:
        cart_id = await repository.touch_cart(tx, owner, utcnow())
        return await repository.add_quantity(tx, cart_id, product_id, quantity, cap, utcnow())


async def test_concurrent_adds_to_one_line_lose_nothing(db):
    owner = Owner(session_id=str(uuid.uuid4()))
    product_id = str(uuid.uuid4())
    results = await asyncio.gather(*(add(db, owner, product_id, 1, 100) for _ in range(20)))
    assert sorted(r for r in results if r is not None) == list(range(1, 21))
    async with db.write() as tx:
        assert await repository.line_quantity(tx, owner.cart_id, product_id) == 20
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(CartItem)) == 1
        assert await session.scalar(select(func.count()).select_from(Cart)) == 1


async def test_capped_increment_refuses_without_change(db):
    owner = Owner(user_id=str(uuid.uuid4()))
    product_id = str(uuid.uuid4())
    assert await add(db, owner, product_id, 4, 5) == 4
    assert await add(db, owner, product_id, 2, 5) is None
    assert await add(db, owner, product_id, 1, 5) == 5
    results = await asyncio.gather(*(add(db, owner, product_id, 1, 7) for _ in range(5)))
    assert sorted(r for r in results if r is not None) == [6, 7]
    async with db.write() as tx:
        assert await repository.line_quantity(tx, owner.cart_id, product_id) == 7


async def test_sweep_deletes_only_expired_guest_carts_with_their_lines(db, tmp_path):
    old_guest, fresh_guest, old_user = (
        Owner(session_id=str(uuid.uuid4())),
        Owner(session_id=str(uuid.uuid4())),
        Owner(user_id=str(uuid.uuid4())),
    )
    for owner in (old_guest, fresh_guest, old_user):
        await add(db, owner, str(uuid.uuid4()), 2, 100)
    long_ago = utcnow() - timedelta(days=31)
    async with db.transaction() as session:
        await session.execute(
            update(Cart).where(Cart.id.in_([old_guest.cart_id, old_user.cart_id])).values(updated_at=long_ago)
        )
    runtime = Runtime(CartSettings(database_url=db.url.replace("+aiosqlite", "")))
    try:
        assert await runtime.sweep_expired_guest_carts() == 1
        assert await runtime.sweep_expired_guest_carts() == 0
    finally:
        await runtime.db.dispose()
    async with db.transaction() as session:
        carts = set(await session.scalars(select(Cart.id)))
        items = set(await session.scalars(select(CartItem.cart_id)))
    assert carts == {fresh_guest.cart_id, old_user.cart_id}
    assert items == carts  # the expired cart's lines went with it (ON DELETE CASCADE)


async def test_quantity_check_constraint_guards_the_table(db):
    from sqlalchemy.exc import IntegrityError

    owner = Owner(session_id=str(uuid.uuid4()))
    with pytest.raises(IntegrityError):
        async with db.write() as tx:
            cart_id = await repository.touch_cart(tx, owner, utcnow())
            await repository.set_quantity(tx, cart_id, str(uuid.uuid4()), 101, utcnow())
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Cart)) == 0


async def test_idempotency_keys_are_remembered_per_cart_and_forgotten_later(db):
    from services.cart.models import CartRequest

    a, b = Owner(session_id=str(uuid.uuid4())), Owner(session_id=str(uuid.uuid4()))
    async with db.write() as tx:
        for owner in (a, b):
            await repository.touch_cart(tx, owner, utcnow())
            assert (
                await repository.remember_request(tx, owner.cart_id, "key-1", "fp-" + owner.cart_id, utcnow()) is None
            )
        assert await repository.remember_request(tx, a.cart_id, "key-1", "other", utcnow()) == "fp-" + a.cart_id
        assert await repository.request_fingerprint(tx, b.cart_id, "key-1") == "fp-" + b.cart_id
        assert await repository.request_fingerprint(tx, b.cart_id, "key-2") is None
    async with db.transaction() as session:
        await session.execute(
            update(CartRequest)
            .where(CartRequest.cart_id == a.cart_id)
            .values(created_at=utcnow() - timedelta(hours=49))
        )
    runtime = Runtime(CartSettings(database_url=db.url.replace("+aiosqlite", "")))
    try:
        assert await runtime.sweep_old_requests() == 1
    finally:
        await runtime.db.dispose()
    async with db.write() as tx:
        assert await repository.request_fingerprint(tx, a.cart_id, "key-1") is None
        await repository.delete_cart(tx, b.cart_id)
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(CartRequest)) == 0


async def test_checkouts_are_recorded_once_restored_once_and_purged(db):
    owner = Owner(user_id=str(uuid.uuid4()))
    lines = [Line(str(uuid.uuid4()), 2), Line(str(uuid.uuid4()), 1)]
    now = utcnow()
    async with db.write() as tx:
        assert await repository.record_checkout(tx, "order-1", owner, lines, "taken", now)
        assert not await repository.record_checkout(tx, "order-1", owner, [], "taken", now)
        assert await repository.record_checkout(tx, "order-2", None, [], "restored", now - timedelta(days=8))
    async with db.write() as tx:
        recorded = await repository.lock_checkout(tx, "order-1")
        assert recorded == repository.Checkout(cart_id=owner.cart_id, owner=owner, lines=lines, state="taken")
        assert await repository.mark_checkout_restored(tx, "order-1")
        assert not await repository.mark_checkout_restored(tx, "order-1")
        restored = await repository.checkout(tx, "order-1")
        assert restored is not None and restored.state == "restored"
        assert await repository.checkout(tx, "order-2") == repository.Checkout(None, None, [], "restored")
        assert await repository.checkout(tx, "unknown") is None
        assert await repository.delete_old_checkouts(tx, now - timedelta(days=7)) == 1
        assert await repository.checkout(tx, "order-2") is None
