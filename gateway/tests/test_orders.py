"""Checkout and the order lifecycle through the real gateway and services (API.md "Orders")."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.invariants.orders_helpers import (
    ADDRESS,
    add_to_cart,
    admin,
    checkout,
    eventually,
    make_product,
    money,
    reservation_status,
    stock,
)


def orders_of(suite, user) -> list[tuple]:
    return suite.sql("orders", "SELECT id, status FROM orders WHERE user_id = %s", (user["user"]["id"],))


async def cart_lines(suite, user) -> list[dict]:
    response = await suite.http.get("/api/v1/cart", headers=user["headers"])
    assert response.status_code == 200, response.text
    return response.json()["data"]["items"]


async def paid_order(suite, *, price: int = 2500, quantity: int = 1, stock_units: int = 10):
    user = await suite.register()
    product = await make_product(suite, price=price, stock=stock_units)
    await add_to_cart(suite, user, product, quantity)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    return user, product, response.json()["data"]


# -- checkout ----------------------------------------------------------------------------------


async def test_checkout_pays_commits_stock_clears_cart_and_mails(suite):
    user = await suite.register()
    first = await make_product(suite, price=1250, stock=5)
    second = await make_product(suite, price=399, stock=5)
    await add_to_cart(suite, user, first, 2)
    await add_to_cart(suite, user, second, 1)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    order = response.json()["data"]
    assert order["status"] == "PAID"
    assert order["number"].startswith("ORD-") and len(order["number"]) == 19
    assert order["userId"] == user["user"]["id"]
    assert {(i["productId"], i["unitPriceCents"], i["quantity"], i["lineTotalCents"]) for i in order["items"]} == {
        (first, 1250, 2, 2500),
        (second, 399, 1, 399),
    }
    assert (order["subtotalCents"], order["taxCents"], order["shippingCents"], order["totalCents"]) == (
        2899,
        232,
        999,
        2899 + 232 + 999,
    )
    assert order["currency"] == "USD"
    assert order["shippingAddress"]["country"] == "GB" and order["shippingAddress"]["line2"] is None
    assert order["payment"]["status"] == "SUCCEEDED" and order["payment"]["method"] == "card"
    assert order["payment"]["id"] and order["payment"]["last4"]
    assert [h["status"] for h in order["history"]] == ["PENDING", "PAID"]
    assert order["createdAt"].endswith("Z") and order["updatedAt"]
    assert set(order) == {
        "id",
        "number",
        "userId",
        "status",
        "items",
        "subtotalCents",
        "taxCents",
        "shippingCents",
        "totalCents",
        "currency",
        "shippingAddress",
        "payment",
        "carrier",
        "trackingNumber",
        "history",
        "createdAt",
        "updatedAt",
    }
    # the cart reads empty with the 201; the stock is committed right after it (the outbox);
    # money captured, email queued
    assert await cart_lines(suite, user) == []
    assert stock(suite, first) == 3 and stock(suite, second) == 4
    await eventually(lambda: reservation_status(suite, order["id"]) == "COMMITTED", timeout=10, interval=0.05)
    assert money(suite, order["id"]) == (order["totalCents"], 0)

    def paid_mail():
        for path in suite.mail_dir.glob("*.eml"):
            text = path.read_text()
            if f"Your order {order['number']} is paid" in text and user["email"] in text:
                return True
        return False

    await eventually(paid_mail, timeout=10)
    # readable by its owner, listed first
    got = await suite.http.get(f"/api/v1/orders/{order['id']}", headers=user["headers"])
    assert got.status_code == 200 and got.json()["data"] == order


@pytest.mark.parametrize(
    ("price", "quantity", "subtotal", "tax", "shipping"),
    [
        (1006, 1, 1006, 80, 999),  # 80.48 → 80
        (1019, 1, 1019, 82, 999),  # 81.52 → 82
        (9999, 1, 9999, 800, 999),  # just below free shipping (799.92 → 800)
        (2500, 4, 10000, 800, 0),  # free shipping from 10000
        (3, 2, 6, 0, 999),  # 0.48 → 0
        (7, 1, 7, 1, 999),  # 0.56 → 1
    ],
)
async def test_totals_follow_api_md(suite, price, quantity, subtotal, tax, shipping):
    # 8 % of whole cents is never exactly half a cent (the fraction is a multiple of 0.04), so
    # the half-up cases are .48 (down) and .52 (up); see test_domain for the exhaustive check.
    user, _product, order = await paid_order(suite, price=price, quantity=quantity)
    assert (order["subtotalCents"], order["taxCents"], order["shippingCents"]) == (subtotal, tax, shipping)
    assert order["totalCents"] == subtotal + tax + shipping
    assert money(suite, order["id"])[0] == order["totalCents"]


async def test_prices_are_snapshotted(suite):
    user, product, order = await paid_order(suite, price=1500)
    boss = await admin(suite)
    response = await suite.http.patch(f"/api/v1/products/{product}", json={"priceCents": 9000}, headers=boss["headers"])
    assert response.status_code == 200, response.text
    got = await suite.http.get(f"/api/v1/orders/{order['id']}", headers=user["headers"])
    assert got.json()["data"]["items"][0]["unitPriceCents"] == 1500


async def test_checkout_with_a_saved_address(suite):
    user = await suite.register()
    saved = await suite.http.post(
        "/api/v1/users/me/addresses",
        json={
            "label": "Home",
            "firstName": "Grace",
            "lastName": "Hopper",
            "line1": "2 Navy Rd",
            "city": "Arlington",
            "state": "VA",
            "postalCode": "22201",
            "country": "US",
        },
        headers=user["headers"],
    )
    assert saved.status_code == 201, saved.text
    product = await make_product(suite, price=1000)
    await add_to_cart(suite, user, product)
    key = str(uuid.uuid4())
    body = {"addressId": saved.json()["data"]["id"], "payment": {"method": "card", "token": "tok_visa"}}
    response = await checkout(suite, user, key=key, body=body)
    assert response.status_code == 201, response.text
    address = response.json()["data"]["shippingAddress"]
    assert (address["firstName"], address["city"], address["state"], address["country"]) == (
        "Grace",
        "Arlington",
        "VA",
        "US",
    )
    # A replay answers what was stored, even once the saved address is gone (the key is found
    # after the address check fails, not before it).
    deleted = await suite.http.delete(f"/api/v1/users/me/addresses/{body['addressId']}", headers=user["headers"])
    assert deleted.status_code == 204, deleted.text
    replay = await checkout(suite, user, key=key, body=body)
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == response.json()
    assert len(orders_of(suite, user)) == 1
    # another user's address id (or an unknown one) is 404 and changes nothing
    other = await suite.register()
    await add_to_cart(suite, other, product)
    for address_id in (saved.json()["data"]["id"], str(uuid.uuid4())):
        response = await checkout(
            suite, other, body={"addressId": address_id, "payment": {"method": "card", "token": "tok_visa"}}
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "ADDRESS_NOT_FOUND"
    assert orders_of(suite, other) == []
    assert len(await cart_lines(suite, other)) == 1


async def test_declined_payment_keeps_the_order_and_cart_and_releases_stock(suite):
    user = await suite.register()
    product = await make_product(suite, price=1000, stock=3)
    await add_to_cart(suite, user, product, 2)
    key = str(uuid.uuid4())
    response = await checkout(suite, user, key=key, token="tok_chargeDeclined")
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "PAYMENT_DECLINED"
    [(order_id, status)] = orders_of(suite, user)
    assert status == "PAYMENT_FAILED"
    assert stock(suite, product) == 3
    assert reservation_status(suite, order_id) == "RELEASED"
    assert money(suite, order_id) == (0, 0)
    assert len(await cart_lines(suite, user)) == 1
    got = (await suite.http.get(f"/api/v1/orders/{order_id}", headers=user["headers"])).json()["data"]
    assert got["status"] == "PAYMENT_FAILED" and got["payment"]["status"] == "DECLINED"
    assert got["payment"]["id"] and got["payment"]["method"] == "card"
    assert [h["status"] for h in got["history"]] == ["PENDING", "PAYMENT_FAILED"]
    # the replay gives the same 402 with the replay header
    replay = await checkout(suite, user, key=key, token="tok_chargeDeclined")
    assert replay.status_code == 402 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["error"]["code"] == "PAYMENT_DECLINED"


async def test_empty_cart_is_409_and_leaves_no_order(suite):
    user = await suite.register()
    key = str(uuid.uuid4())
    response = await checkout(suite, user, key=key)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "CART_EMPTY"
    assert orders_of(suite, user) == []
    replay = await checkout(suite, user, key=key)
    assert replay.status_code == 409 and replay.headers["idempotent-replayed"] == "true"


async def test_short_stock_is_409_with_product_ids_and_nothing_reserved(suite):
    user = await suite.register()
    plenty = await make_product(suite, stock=10)
    scarce = await make_product(suite, stock=3)
    await add_to_cart(suite, user, plenty, 1)
    await add_to_cart(suite, user, scarce, 3)
    # someone else buys one of the scarce units first
    other = await suite.register()
    await add_to_cart(suite, other, scarce, 1)
    assert (await checkout(suite, other)).status_code == 201
    response = await checkout(suite, user)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_STOCK" and error["details"]["productIds"] == [scarce]
    [(order_id, status)] = orders_of(suite, user)
    assert status == "CANCELLED"  # documented: never left PENDING, nothing reserved or charged
    assert stock(suite, plenty) == 10 and stock(suite, scarce) == 2
    assert reservation_status(suite, order_id) is None
    assert money(suite, order_id) == (0, 0)
    assert len(await cart_lines(suite, user)) == 2


async def test_archived_product_is_409(suite):
    user = await suite.register()
    product = await make_product(suite)
    await add_to_cart(suite, user, product)
    boss = await admin(suite)
    assert (await suite.http.delete(f"/api/v1/products/{product}", headers=boss["headers"])).status_code == 204
    response = await checkout(suite, user)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] in ("PRODUCT_UNAVAILABLE", "CART_EMPTY")
    assert orders_of(suite, user) == []
    assert stock(suite, product) == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payment": {"method": "card", "token": "tok_visa"}}, "shippingAddress"),
        (
            {"shippingAddress": {**ADDRESS, "country": "ZZ"}, "payment": {"method": "card", "token": "tok_visa"}},
            "shippingAddress.country",
        ),
        (
            {"shippingAddress": {**ADDRESS, "city": " "}, "payment": {"method": "card", "token": "tok_visa"}},
            "shippingAddress.city",
        ),
        ({"shippingAddress": ADDRESS, "payment": {"method": "cash", "token": "tok_visa"}}, "payment.method"),
        ({"shippingAddress": ADDRESS}, "payment"),
        (
            {"shippingAddress": ADDRESS, "addressId": "x", "payment": {"method": "card", "token": "tok_visa"}},
            "shippingAddress",
        ),
    ],
)
async def test_bad_checkout_bodies_are_400_and_change_nothing(suite, body, field):
    user = await suite.register()
    product = await make_product(suite, stock=4)
    await add_to_cart(suite, user, product)
    response = await checkout(suite, user, body=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert any(name.startswith(field) for name in error["details"]["fields"]), error
    assert orders_of(suite, user) == []
    assert stock(suite, product) == 4


async def test_invalid_payment_token_is_400_and_changes_nothing(suite):
    user = await suite.register()
    product = await make_product(suite, stock=4)
    await add_to_cart(suite, user, product)
    reservations_before = suite.sql(
        "catalog", "SELECT count(*) FROM reservation_lines WHERE product_id = %s", (product,)
    )
    key = str(uuid.uuid4())
    for token in ("tok_bogus", "pm_", "x" * 300):
        response = await checkout(suite, user, key=key, token=token)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] in ("INVALID_PAYMENT_TOKEN", "VALIDATION_ERROR")
    # refused before anything was recorded: no order, no reservation, no payment, cart kept
    assert orders_of(suite, user) == []
    assert stock(suite, product) == 4
    assert (
        suite.sql("catalog", "SELECT count(*) FROM reservation_lines WHERE product_id = %s", (product,))
        == reservations_before
    )
    cart = (await suite.http.get("/api/v1/cart", headers=user["headers"])).json()["data"]
    assert [item["productId"] for item in cart["items"]] == [product]
    # the same key with a good token then checks out (a refused request does not burn its key)
    response = await checkout(suite, user, key=key, token="tok_visa")
    assert response.status_code == 201, response.text


async def test_checkout_needs_a_user_and_a_key(suite):
    response = await suite.http.post(
        "/api/v1/orders", json={"shippingAddress": ADDRESS, "payment": {"method": "card", "token": "tok_visa"}}
    )
    assert response.status_code == 401
    user = await suite.register()
    product = await make_product(suite, stock=4)
    await add_to_cart(suite, user, product)
    response = await suite.http.post(
        "/api/v1/orders",
        json={"shippingAddress": ADDRESS, "payment": {"method": "card", "token": "tok_visa"}},
        headers=user["headers"],
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert orders_of(suite, user) == []


# -- idempotency -------------------------------------------------------------------------------


async def test_replays_return_the_first_response_and_charge_once(suite):
    user = await suite.register()
    product = await make_product(suite, stock=10)
    await add_to_cart(suite, user, product, 2)
    key = str(uuid.uuid4())
    first = await checkout(suite, user, key=key)
    assert first.status_code == 201, first.text
    sequential = [await checkout(suite, user, key=key) for _ in range(5)]
    concurrent = await asyncio.gather(*(checkout(suite, user, key=key) for _ in range(5)))
    for replay in [*sequential, *concurrent]:
        assert replay.status_code == 201, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
    assert len(orders_of(suite, user)) == 1
    order_id = first.json()["data"]["id"]
    assert suite.sql("payments", "SELECT count(*) FROM payments WHERE order_id = %s", (order_id,)) == [(1,)]
    assert stock(suite, product) == 8
    # the same key with another body is 422 and changes nothing
    other_body = {
        "shippingAddress": {**ADDRESS, "city": "Paris", "country": "FR"},
        "payment": {"method": "card", "token": "tok_visa"},
    }
    reused = await checkout(suite, user, key=key, body=other_body)
    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(orders_of(suite, user)) == 1
    # keys are per user: another user's identical key is a new checkout
    other = await suite.register()
    await add_to_cart(suite, other, product, 1)
    theirs = await checkout(suite, other, key=key)
    assert theirs.status_code == 201 and theirs.json()["data"]["id"] != order_id


async def test_concurrent_first_requests_with_one_key_make_one_order(suite):
    user = await suite.register()
    product = await make_product(suite, stock=10)
    await add_to_cart(suite, user, product, 1)
    key = str(uuid.uuid4())
    responses = await asyncio.gather(*(checkout(suite, user, key=key) for _ in range(5)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {201, 409}, [r.text for r in responses]
    assert 201 in codes
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "REQUEST_IN_PROGRESS"
    assert len(orders_of(suite, user)) == 1
    assert stock(suite, product) == 9
    bodies = {json.dumps(r.json(), sort_keys=True) for r in responses if r.status_code == 201}
    assert len(bodies) == 1


async def test_a_duplicate_while_the_first_runs_is_409_request_in_progress(suite):
    runtime = suite.servers["orders"].runtime
    user = await suite.register()
    product = await make_product(suite, stock=10)
    await add_to_cart(suite, user, product, 1)
    key = str(uuid.uuid4())
    gate = asyncio.Event()
    runtime.holds[("after_pending_recorded", user["user"]["id"])] = gate
    try:
        first = asyncio.create_task(checkout(suite, user, key=key))
        await eventually(lambda: orders_of(suite, user), timeout=10, interval=0.05)
        duplicate = await checkout(suite, user, key=key)
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["error"]["code"] == "REQUEST_IN_PROGRESS"
        assert orders_of(suite, user)[0][1] == "PENDING"
    finally:
        gate.set()
        runtime.holds.clear()
    response = await first
    assert response.status_code == 201, response.text
    replay = await checkout(suite, user, key=key)
    assert replay.status_code == 201 and replay.json() == response.json()


async def test_keys_are_kept_a_day_then_purged(suite):
    runtime = suite.servers["orders"].runtime
    user = await suite.register()
    key = str(uuid.uuid4())
    assert (await checkout(suite, user, key=key)).status_code == 409  # CART_EMPTY, stored under the key
    count = "SELECT count(*) FROM idempotency_keys WHERE user_id = %s AND key = %s"
    assert suite.sql("orders", count, (user["user"]["id"], key)) == [(1,)]
    suite.sql(
        "orders",
        "UPDATE idempotency_keys SET created_at = now() - interval '23 hours' WHERE user_id = %s AND key = %s",
        (user["user"]["id"], key),
    )
    await runtime.checkout.purge_once()
    assert suite.sql("orders", count, (user["user"]["id"], key)) == [(1,)]
    suite.sql(
        "orders",
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE user_id = %s AND key = %s",
        (user["user"]["id"], key),
    )
    assert await runtime.checkout.purge_once() >= 1
    assert suite.sql("orders", count, (user["user"]["id"], key)) == [(0,)]


async def test_an_order_number_collision_draws_another(suite, monkeypatch):
    from services.orders import domain

    taken = f"ORD-20260101-{uuid.uuid4().hex[:6].upper().translate(str.maketrans('01', 'AB'))}"
    fresh = "ORD-20260101-" + "".join(c for c in uuid.uuid4().hex.upper() if c in domain.NUMBER_ALPHABET)[:6]
    numbers = iter([taken, taken, fresh])
    monkeypatch.setattr(domain, "order_number", lambda _now: next(numbers))
    first = await paid(suite)
    second = await paid(suite)
    assert first["number"] == taken and second["number"] == fresh


async def paid(suite) -> dict:
    user = await suite.register()
    product = await make_product(suite, price=1000)
    await add_to_cart(suite, user, product)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    return response.json()["data"]
