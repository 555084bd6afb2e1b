"""A charge is only attempted while the stock is held, and money captured for goods that are
gone is refunded (issue 9, fault path 2; services/orders/README.md "Rules for money and stock").

The checkout is held just before its charge step (`before_reserved`) while the test makes the
reservation lapse the way a long pending payment or an early expiry would: the catalog's sweep
releases it, and optionally another buyer takes the units. Then the checkout goes on."""

from __future__ import annotations

import asyncio

from tests.invariants.orders_helpers import (
    add_to_cart,
    checkout,
    eventually,
    make_product,
    money,
    reservation_status,
    reserved_and_sold,
    stock,
)


async def held_before_charge(suite, user, product):
    """Starts a checkout and waits until it is RESERVED and held before its charge."""
    runtime = suite.servers["orders"].runtime
    release = asyncio.Event()
    runtime.holds[("before_reserved", user["user"]["id"])] = release
    task = asyncio.create_task(checkout(suite, user))
    rows = await eventually(
        lambda: suite.sql(
            "orders", "SELECT id FROM orders WHERE user_id = %s AND stage = 'reserved'", (user["user"]["id"],)
        ),
        timeout=15,
        interval=0.05,
    )
    return rows[0][0], release, task


async def lapse(suite, order_id: str, *, long_ago: bool) -> None:
    """The reservation expires and the sweep releases it; `long_ago`: the order was reserved long
    before its charge (a pending payment re-driven by recovery), else just now (an early expiry)."""
    suite.sql("catalog", "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = %s", (order_id,))
    await suite.servers["catalog"].runtime.stock.release_expired()
    assert reservation_status(suite, order_id) == "RELEASED"
    if long_ago:
        suite.sql("orders", "UPDATE orders SET updated_at = now() - interval '10 minutes' WHERE id = %s", (order_id,))


async def buy_everything(suite, product: str, units: int) -> None:
    other = await suite.register()
    await add_to_cart(suite, other, product, units)
    response = await checkout(suite, other)
    assert response.status_code == 201, response.text


async def test_a_lapsed_reservation_is_retaken_before_a_late_charge(suite):
    user = await suite.register()
    product = await make_product(suite, price=2000, stock=3)
    await add_to_cart(suite, user, product, 2)
    order_id, release, task = await held_before_charge(suite, user, product)
    await lapse(suite, order_id, long_ago=True)
    assert stock(suite, product) == 3
    release.set()
    response = await task
    assert response.status_code == 201, response.text
    # renewed (re-taken with a new expiry) before the charge, not only patched up by the commit
    assert suite.sql("catalog", "SELECT expires_at > now() FROM reservations WHERE id = %s", (order_id,))[0][0]
    await eventually(lambda: reservation_status(suite, order_id) == "COMMITTED", timeout=15, interval=0.1)
    assert stock(suite, product) == 1
    assert reserved_and_sold(suite, product) == (0, 2)


async def test_a_late_charge_is_not_made_when_the_stock_is_gone(suite):
    user = await suite.register()
    product = await make_product(suite, price=2000, stock=2)
    await add_to_cart(suite, user, product, 2)
    order_id, release, task = await held_before_charge(suite, user, product)
    await lapse(suite, order_id, long_ago=True)
    await buy_everything(suite, product, 2)
    release.set()
    response = await task
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "RESERVATION_LAPSED"
    [(status, failure)] = suite.sql("orders", "SELECT status, failure_code FROM orders WHERE id = %s", (order_id,))
    assert (status, failure) == ("CANCELLED", "RESERVATION_LAPSED")
    assert money(suite, order_id) == (0, 0)  # never charged
    assert stock(suite, product) == 0 and reserved_and_sold(suite, product) == (0, 2)
    # The buyer's cart is back as it was.
    cart = (await suite.http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert [(item["productId"], item["quantity"]) for item in cart["items"]] == [(product, 2)]


async def test_money_captured_for_goods_that_are_gone_is_refunded(suite):
    user = await suite.register()
    product = await make_product(suite, price=2000, stock=2)
    await add_to_cart(suite, user, product, 2)
    order_id, release, task = await held_before_charge(suite, user, product)
    await lapse(suite, order_id, long_ago=False)  # expired early: the charge does not know
    await buy_everything(suite, product, 2)
    release.set()
    response = await task
    assert response.status_code == 201, response.text
    [(total,)] = suite.sql("orders", "SELECT total_cents FROM orders WHERE id = %s", (order_id,))
    await eventually(
        lambda: (
            suite.sql("orders", "SELECT status, failure_code FROM orders WHERE id = %s", (order_id,))[0]
            == ("CANCELLED", "STOCK_UNAVAILABLE")
        ),
        timeout=15,
        interval=0.1,
    )
    await eventually(lambda: money(suite, order_id) == (total, total), timeout=15, interval=0.1)
    assert stock(suite, product) == 0 and reserved_and_sold(suite, product) == (0, 2)  # no oversell
    assert reservation_status(suite, order_id) == "RELEASED"
