"""An add's statements on both dialects: PostgreSQL runs the key and the add as one statement each
(data-modifying WITHs inside the add's transaction), SQLite as several. Both must leave the same
rows, refuse the same adds without changing anything, and stay right under concurrency."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.cart import repository
from services.cart.domain import Line, Owner
from services.cart.server import MIGRATIONS_DIR
from shop.lib.db import Database, utcnow
from shop.lib.migrations import upgrade_async


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request, databases, tmp_path):
    url = databases.create("cart_repo") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'cart.db'}"
    await upgrade_async(MIGRATIONS_DIR, url)
    database = Database(url)
    yield database
    await database.dispose()


async def add(
    db: Database, owner: Owner, product_id: str, quantity: int, *, cap: int = 100, max_lines: int = 50, key=None
) -> repository.Added | str:
    """One add as the use case runs it: the fingerprint stored with a repeated key, else what the
    add found (its transaction rolled back when refused, as the use case's raise does)."""
    fingerprint = f"{product_id}:{quantity}"

    class Refused(Exception):
        pass

    try:
        async with db.write() as tx:
            stored = await repository.touch_and_remember(tx, owner, key, fingerprint, utcnow())
            if stored is not None:
                return stored
            added = await repository.add_line(tx, owner.cart_id, product_id, quantity, cap, max_lines, utcnow())
            if added.lines is None:
                raise Refused(added)
            return added
    except Refused as refused:
        return refused.args[0]


def lines_of(result: repository.Added | str) -> list[Line] | None:
    assert isinstance(result, repository.Added), result
    return result.lines


async def cart_lines(db: Database, owner: Owner) -> list[Line]:
    return await repository.read_lines(db, owner.cart_id)


async def test_an_add_answers_the_lines_after_it_in_the_order_they_were_added(db):
    owner = Owner(session_id=str(uuid.uuid4()))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    added = await add(db, owner, first, 2)
    assert added == repository.Added(line_count=0, existing=0, lines=[Line(first, 2)])
    added = await add(db, owner, second, 1)
    assert added == repository.Added(line_count=1, existing=0, lines=[Line(first, 2), Line(second, 1)])
    added = await add(db, owner, first, 3)  # to an existing line: it keeps its place
    assert added == repository.Added(line_count=2, existing=2, lines=[Line(first, 5), Line(second, 1)])
    assert await cart_lines(db, owner) == added.lines


async def test_refused_adds_change_nothing_and_say_why(db):
    owner = Owner(user_id=str(uuid.uuid4()))
    products = [str(uuid.uuid4()) for _ in range(3)]
    for product_id in products[:2]:
        await add(db, owner, product_id, 4, cap=5, max_lines=2)
    before = await cart_lines(db, owner)
    # over the line's cap: the line and its quantity before
    assert await add(db, owner, products[0], 2, cap=5, max_lines=2) == repository.Added(2, 4, None)
    # a new line in a full cart
    assert await add(db, owner, products[2], 1, cap=5, max_lines=2) == repository.Added(2, 0, None)
    assert await cart_lines(db, owner) == before


async def test_a_key_is_kept_only_with_its_add(db):
    owner = Owner(session_id=str(uuid.uuid4()))
    product_id = str(uuid.uuid4())
    await add(db, owner, product_id, 1)
    # a refused add (over the line's cap) rolls its key back with it
    assert lines_of(await add(db, owner, product_id, 2, cap=2, key="k1")) is None
    assert await repository.lines_and_request(db, owner.cart_id, "k1") == ([Line(product_id, 1)], None)
    assert lines_of(await add(db, owner, product_id, 1, cap=2, key="k1")) == [Line(product_id, 2)]
    # a repeat of the key finds the fingerprint, before (the read) and inside the add's transaction
    assert await repository.lines_and_request(db, owner.cart_id, "k1") == ([Line(product_id, 2)], f"{product_id}:1")
    assert await add(db, owner, product_id, 1, cap=2, key="k1") == f"{product_id}:1"
    assert await cart_lines(db, owner) == [Line(product_id, 2)]
    # keys belong to their cart
    other = Owner(session_id=str(uuid.uuid4()))
    assert await repository.lines_and_request(db, other.cart_id, "k1") == ([], None)


async def test_concurrent_adds_keep_the_caps(db):
    """The cart's lock serialises adds: concurrent new lines stop at the line limit, concurrent
    increments at the line's cap, and concurrent repeats of one key add once."""
    owner = Owner(session_id=str(uuid.uuid4()))
    await add(db, owner, str(uuid.uuid4()), 1)
    results = await asyncio.gather(*(add(db, owner, str(uuid.uuid4()), 1, max_lines=3) for _ in range(6)))
    assert sum(lines_of(result) is not None for result in results) == 2
    assert len(await cart_lines(db, owner)) == 3

    product_id = str(uuid.uuid4())
    results = await asyncio.gather(*(add(db, Owner(user_id=owner.session_id), product_id, 2, cap=7) for _ in range(6)))
    assert sorted(lines[0].quantity for lines in map(lines_of, results) if lines is not None) == [2, 4, 6]

    keyed = Owner(session_id=str(uuid.uuid4()))
    results = await asyncio.gather(*(add(db, keyed, product_id, 1, key="once") for _ in range(6)))
    assert sum(isinstance(result, repository.Added) for result in results) == 1
    assert await cart_lines(db, keyed) == [Line(product_id, 1)]


async def test_concurrent_first_writes_create_one_cart(db):
    """On PostgreSQL an upsert on the cart's id raced on the owner's own unique column (a unique
    violation or a deadlock when two first writes created one cart at once)."""
    for owner in (Owner(session_id=str(uuid.uuid4())), Owner(user_id=str(uuid.uuid4()))):

        async def touch(owner=owner) -> str:
            async with db.write() as tx:
                return await repository.touch_cart(tx, owner, utcnow())

        assert await asyncio.gather(*(touch() for _ in range(16))) == [owner.cart_id] * 16
        assert await asyncio.gather(*(add(db, owner, str(uuid.uuid4()), 1, key="first") for _ in range(8)))


async def test_the_read_before_an_add_gives_the_lines_in_the_carts_order(db):
    """A replay answers from this read: its lines come in the order every other answer uses (the
    order they were added), whatever order the table or an index hands them over in."""
    owner = Owner(session_id=str(uuid.uuid4()))
    products = sorted((str(uuid.uuid4()) for _ in range(4)), reverse=True)  # ids against the add order
    for product_id in products:
        await add(db, owner, product_id, 1, key=f"k-{product_id}")
    await add(db, owner, products[0], 1)  # an update moves the first line's row version in the table
    expected = [Line(products[0], 2), *(Line(product_id, 1) for product_id in products[1:])]
    assert await cart_lines(db, owner) == expected
    assert await repository.lines_and_request(db, owner.cart_id, f"k-{products[2]}") == (
        expected,
        f"{products[2]}:1",
    )
