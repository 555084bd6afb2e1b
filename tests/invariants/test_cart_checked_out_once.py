"""Side effects after the answer are not a glitch the buyer can see (issue 9): right after the 201
the cart reads empty, and one cart is never checked out twice, whatever key the second request
carries (the cart is taken by the checkout in one cart transaction)."""

from __future__ import annotations

import asyncio

from tests.invariants.orders_helpers import add_to_cart, checkout, make_product, stock, successful_charges


async def test_the_cart_reads_empty_right_after_the_201(suite):
    user = await suite.register()
    product = await make_product(suite, price=1500, stock=10)
    await add_to_cart(suite, user, product, 2)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    cart = (await suite.http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert cart["items"] == []


async def test_one_cart_is_checked_out_once_whatever_the_keys(suite):
    for _round in range(3):
        user = await suite.register()
        product = await make_product(suite, price=1500, stock=50)
        await add_to_cart(suite, user, product, 2)
        responses = await asyncio.gather(*(checkout(suite, user) for _ in range(6)))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
        codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
        assert codes == {"CART_EMPTY"}
        orders = [
            row[0] for row in suite.sql("orders", "SELECT id FROM orders WHERE user_id = %s", (user["user"]["id"],))
        ]
        assert len(orders) == 1 and successful_charges(suite, orders) == 1
        assert stock(suite, product) == 48
