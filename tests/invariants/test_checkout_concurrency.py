"""The stock and money invariants under concurrency (DESIGN.md "Tests"): 100 simultaneous
checkouts by different users for the last 10 units."""

from __future__ import annotations

import asyncio
import uuid

from tests.invariants.orders_helpers import (
    add_to_cart,
    checkout,
    make_product,
    register_many,
    reserved_and_sold,
    stock,
    successful_charges,
)


async def test_hundred_checkouts_for_the_last_ten_units(suite):
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
        row[0] for row in suite.sql("orders", "SELECT id FROM orders WHERE user_id = ANY(%s) AND status = 'PAID'",
                                    (user_ids,))
    )
    statuses = suite.sql(
        "orders", "SELECT status, count(*) FROM orders WHERE user_id = ANY(%s) GROUP BY status", (user_ids,)
    )
    assert dict(statuses) == {"PAID": 10, "CANCELLED": 90}
    reserved, sold = reserved_and_sold(suite, product)
    assert (reserved, sold) == (0, 10)
