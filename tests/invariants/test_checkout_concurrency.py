"""The stock and money invariants under concurrency (DESIGN.md "Tests"): 100 simultaneous
checkouts by different users for the last 10 units, and 50 multi-line carts over the same products
(lines added in different orders) checked out at once: exact counts, no deadlock, no 5xx.

Each runs once in `make test`; `make chaos` repeats them with fresh data (CONCURRENCY_REPEAT)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid

import pytest

from tests.invariants.orders_helpers import (
    add_to_cart,
    checkout,
    make_product,
    register_many,
    reserved_and_sold,
    stock,
    successful_charges,
)

REPEAT = range(int(os.environ.get("CONCURRENCY_REPEAT", "1")))


@pytest.mark.parametrize("run", REPEAT)
async def test_hundred_checkouts_for_the_last_ten_units(suite, run):
    product = await make_product(suite, price=1500, stock=10)
    users = await register_many(suite, 100)
    await asyncio.gather(*(add_to_cart(suite, user, product, 1) for user in users))

    # One request per user, all at once, no retries: each answer is final on the first try.
    responses = await asyncio.gather(*(checkout(suite, user, key=str(uuid.uuid4()), timeout=180) for user in users))

    codes = [response.status_code for response in responses]
    assert all(code < 500 for code in codes), [r.text for r in responses if r.status_code >= 500][:3]
    assert codes.count(201) == 10, codes
    assert codes.count(409) == 90, codes
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "INSUFFICIENT_STOCK" and error["details"]["productIds"] == [product]
    assert stock(suite, product) == 0
    paid_ids = [r.json()["data"]["id"] for r in responses if r.status_code == 201]
    assert all(r.json()["data"]["status"] == "PAID" for r in responses if r.status_code == 201)
    user_ids = [user["user"]["id"] for user in users]
    order_ids = [row[0] for row in suite.sql("orders", "SELECT id FROM orders WHERE user_id = ANY(%s)", (user_ids,))]
    assert len(order_ids) == 100
    assert successful_charges(suite, order_ids) == 10
    assert sorted(paid_ids) == sorted(
        row[0]
        for row in suite.sql("orders", "SELECT id FROM orders WHERE user_id = ANY(%s) AND status = 'PAID'", (user_ids,))
    )
    statuses = suite.sql(
        "orders", "SELECT status, count(*) FROM orders WHERE user_id = ANY(%s) GROUP BY status", (user_ids,)
    )
    assert dict(statuses) == {"PAID": 10, "CANCELLED": 90}
    reserved, sold = reserved_and_sold(suite, product)
    assert (reserved, sold) == (0, 10)


@pytest.mark.parametrize("run", REPEAT)
async def test_fifty_multi_line_carts_over_the_same_products(suite, run):
    products = [await make_product(suite, price=700 + 100 * i, stock=30) for i in range(3)]
    users = await register_many(suite, 50)
    rng = random.Random(run)

    async def fill(user):
        for product in rng.sample(products, len(products)):  # every cart adds its lines in another order
            await add_to_cart(suite, user, product, 1)

    await asyncio.gather(*(fill(user) for user in users))
    responses = await asyncio.gather(*(checkout(suite, user, key=str(uuid.uuid4()), timeout=180) for user in users))

    codes = [response.status_code for response in responses]
    assert all(code < 500 for code in codes), [r.text for r in responses if r.status_code >= 500][:3]
    assert codes.count(201) == 30 and codes.count(409) == 20, codes
    assert all(r.json()["error"]["code"] == "INSUFFICIENT_STOCK" for r in responses if r.status_code == 409)
    for product in products:
        assert stock(suite, product) == 0
        assert reserved_and_sold(suite, product) == (0, 30)
    user_ids = [user["user"]["id"] for user in users]
    order_ids = [row[0] for row in suite.sql("orders", "SELECT id FROM orders WHERE user_id = ANY(%s)", (user_ids,))]
    assert successful_charges(suite, order_ids) == 30
    deadlocks = suite.sql("catalog", "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    assert deadlocks == [(0,)]
