"""The cart through the real gateway (API.md "Cart"): guests and users, pricing from the catalog,
bad inputs refused with nothing changed, isolation between carts, merge, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from services.cart.tests.helpers import (
    adjust_stock,
    archive,
    cart_id,
    cart_rows,
    make_product,
    set_price,
    snapshot,
)

CART_KEYS = {"id", "items", "itemCount", "subtotalCents", "currency"}
ITEM_KEYS = {"productId", "sku", "name", "unitPriceCents", "quantity", "lineTotalCents", "available"}


def guest() -> dict[str, str]:
    return {"X-Session-ID": str(uuid.uuid4())}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, response.text
    assert error["requestId"]
    return error


# -- X-Session-ID ---------------------------------------------------------------------------------


async def test_guest_without_session_is_issued_one(suite, http):
    response = await http.get("/api/v1/cart")
    assert response.status_code == 200, response.text
    issued = response.headers["x-session-id"]
    assert str(uuid.UUID(issued)) == issued
    cart = response.json()["data"]
    assert set(cart) == CART_KEYS
    assert cart == {
        "id": cart_id(session_id=issued),
        "items": [],
        "itemCount": 0,
        "subtotalCents": 0,
        "currency": "USD",
    }
    # a second request without a session gets another one; with it, none is issued and the cart is the same
    again = await http.get("/api/v1/cart")
    assert again.headers["x-session-id"] != issued
    same = await http.get("/api/v1/cart", headers={"X-Session-ID": issued})
    assert "x-session-id" not in same.headers
    assert response.headers["cache-control"] == same.headers["cache-control"] == "no-store"
    assert same.json()["data"]["id"] == cart["id"]
    # an empty cart was only read: nothing stored
    assert suite.sql("cart", "SELECT count(*) FROM carts WHERE id = %s", (cart["id"],)) == [(0,)]


async def test_guest_session_issued_on_first_add_is_the_cart(suite, http):
    product = await make_product(suite, price=1234, stock=5)
    response = await http.post("/api/v1/cart/items", json={"productId": product["id"]})
    assert response.status_code == 200, response.text
    session = response.headers["x-session-id"]
    assert response.json()["data"]["id"] == cart_id(session_id=session)
    assert cart_rows(suite, cart_id(session_id=session)) == {product["id"]: 1}
    assert suite.sql("cart", "SELECT user_id, session_id FROM carts WHERE id = %s", (cart_id(session_id=session),)) == [
        (None, session)
    ]


@pytest.mark.parametrize(
    "value", ["not-a-uuid", "", "1234", "0" * 32, f"{{{uuid.uuid4()}}}", str(uuid.uuid4()) + "x", "' OR 1=1 --"]
)
async def test_malformed_session_id_is_400_on_every_route(suite, http, value):
    product = await make_product(suite)
    before = snapshot(suite)
    headers = {"X-Session-ID": value}
    pid = product["id"]
    responses = [
        await http.get("/api/v1/cart", headers=headers),
        await http.post("/api/v1/cart/items", json={"productId": pid}, headers=headers),
        await http.put(f"/api/v1/cart/items/{pid}", json={"quantity": 1}, headers=headers),
        await http.delete(f"/api/v1/cart/items/{pid}", headers=headers),
        await http.delete("/api/v1/cart", headers=headers),
    ]
    for response in responses:
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert "X-Session-ID" in error["details"]["fields"]
        assert "x-session-id" not in response.headers
    assert snapshot(suite) == before


async def test_session_id_is_case_insensitive(suite, http):
    product = await make_product(suite)
    session = str(uuid.uuid4())
    await http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers={"X-Session-ID": session.upper()})
    cart = (await http.get("/api/v1/cart", headers={"X-Session-ID": session})).json()["data"]
    assert [item["productId"] for item in cart["items"]] == [product["id"]]


# -- adding, setting, removing --------------------------------------------------------------------


async def test_add_prices_the_cart_and_adds_to_the_line(suite, http):
    a = await make_product(suite, price=1999, stock=10)
    b = await make_product(suite, price=250, stock=3)
    headers = guest()
    response = await http.post("/api/v1/cart/items", json={"productId": a["id"], "quantity": 2}, headers=headers)
    assert response.status_code == 200, response.text
    response = await http.post("/api/v1/cart/items", json={"productId": b["id"]}, headers=headers)
    response = await http.post("/api/v1/cart/items", json={"productId": a["id"], "quantity": 3}, headers=headers)
    assert response.status_code == 200, response.text
    cart = response.json()["data"]
    assert set(cart) == CART_KEYS and all(set(item) == ITEM_KEYS for item in cart["items"])
    assert cart["items"] == [
        {
            "productId": a["id"],
            "sku": a["sku"],
            "name": a["name"],
            "unitPriceCents": 1999,
            "quantity": 5,
            "lineTotalCents": 9995,
            "available": True,
        },
        {
            "productId": b["id"],
            "sku": b["sku"],
            "name": b["name"],
            "unitPriceCents": 250,
            "quantity": 1,
            "lineTotalCents": 250,
            "available": True,
        },
    ]
    assert cart["itemCount"] == 6 and cart["subtotalCents"] == 10245 and cart["currency"] == "USD"
    assert (await http.get("/api/v1/cart", headers=headers)).json()["data"] == cart
    assert cart_rows(suite, cart["id"]) == {a["id"]: 5, b["id"]: 1}


async def test_put_sets_and_zero_removes(suite, http):
    a = await make_product(suite, price=100, stock=50)
    b = await make_product(suite, price=300, stock=50)
    headers = guest()
    await http.post("/api/v1/cart/items", json={"productId": a["id"], "quantity": 4}, headers=headers)
    response = await http.put(f"/api/v1/cart/items/{a['id']}", json={"quantity": 7}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["subtotalCents"] == 700
    # PUT of a product not yet in the cart creates its line
    response = await http.put(f"/api/v1/cart/items/{b['id']}", json={"quantity": 2}, headers=headers)
    assert [(i["productId"], i["quantity"]) for i in response.json()["data"]["items"]] == [(a["id"], 7), (b["id"], 2)]
    response = await http.put(f"/api/v1/cart/items/{a['id']}", json={"quantity": 0}, headers=headers)
    assert response.status_code == 200, response.text
    cart = response.json()["data"]
    assert [i["productId"] for i in cart["items"]] == [b["id"]] and cart["subtotalCents"] == 600
    assert cart_rows(suite, cart["id"]) == {b["id"]: 2}


async def test_delete_item_and_clear(suite, http):
    a = await make_product(suite, stock=5)
    b = await make_product(suite, stock=5)
    headers = guest()
    for product in (a, b):
        await http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers=headers)
    response = await http.delete(f"/api/v1/cart/items/{a['id']}", headers=headers)
    assert response.status_code == 200, response.text
    assert [i["productId"] for i in response.json()["data"]["items"]] == [b["id"]]
    cart = response.json()["data"]["id"]
    response = await http.delete("/api/v1/cart", headers=headers)
    assert response.status_code == 204 and response.content == b""
    assert cart_rows(suite, cart) == {}
    assert (await http.get("/api/v1/cart", headers=headers)).json()["data"]["items"] == []
    # clearing an empty (or never used) cart is fine, and a guest without a session gets one
    response = await http.delete("/api/v1/cart")
    assert response.status_code == 204 and uuid.UUID(response.headers["x-session-id"])


# -- bad inputs: a clear 4xx and nothing changed --------------------------------------------------

BAD_ADD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"productId": "PID", "quantity": "2"}, "quantity"),
    ({"productId": "PID", "quantity": 2.5}, "quantity"),
    ({"productId": "PID", "quantity": True}, "quantity"),
    ({"productId": "PID", "quantity": None}, "quantity"),
    ({"productId": "PID", "quantity": 0}, "quantity"),
    ({"productId": "PID", "quantity": -1}, "quantity"),
    ({"productId": "PID", "quantity": 101}, "quantity"),
    ({"productId": "PID", "quantity": 2**31}, "quantity"),
    ({"productId": "PID", "quantity": 10**30}, "quantity"),
    ({"productId": "PID", "quantity": -(10**30)}, "quantity"),
    ({"quantity": 1}, "productId"),
    ({"productId": 12345}, "productId"),
    ({"productId": None}, "productId"),
    ({"productId": ["PID"]}, "productId"),
    ({"productId": "not-a-uuid"}, "productId"),
    ({"productId": "PID-with-suffix"}, "productId"),
    ({"productId": ""}, "productId"),
    ({"productId": "PID", "price": 1}, "price"),
    ({"productId": "PID", "unitPriceCents": 1}, "unitPriceCents"),
]


async def test_bad_add_bodies_are_400_and_change_nothing(suite, http):
    product = await make_product(suite, stock=10)
    headers = guest()
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 2}, headers=headers)
    before = snapshot(suite)
    for body, field in BAD_ADD_BODIES:
        body = {
            key: (value.replace("PID", product["id"]) if isinstance(value, str) else value)
            for key, value in body.items()
        }
        if isinstance(body.get("productId"), list):
            body["productId"] = [product["id"]]
        response = await http.post("/api/v1/cart/items", json=body, headers=headers)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert field in error["details"]["fields"], (body, error)
    for raw in (b"not json", b"[1, 2]", b'"x"', b"", b'{"productId": '):
        response = await http.post(
            "/api/v1/cart/items", content=raw, headers={**headers, "Content-Type": "application/json"}
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    assert snapshot(suite) == before
    # 2.0 is an integer as JSON Schema reads the documented `integer` (a fraction is not: above)
    response = await http.post(
        "/api/v1/cart/items", json={"productId": product["id"], "quantity": 2.0}, headers=headers
    )
    assert response.status_code == 200 and response.json()["data"]["items"][0]["quantity"] == 4, response.text


async def test_unknown_archived_and_draft_products_are_404(suite, http):
    archived = await make_product(suite)
    await archive(suite, archived["id"])
    draft = await make_product(suite, draft=True)
    headers = guest()
    before = snapshot(suite)
    for product_id in (str(uuid.uuid4()), archived["id"], draft["id"]):
        assert_error(
            await http.post("/api/v1/cart/items", json={"productId": product_id}, headers=headers),
            404,
            "PRODUCT_NOT_FOUND",
        )
        assert_error(
            await http.put(f"/api/v1/cart/items/{product_id}", json={"quantity": 1}, headers=headers),
            404,
            "PRODUCT_NOT_FOUND",
        )
    assert snapshot(suite) == before


async def test_stock_and_line_limits(suite, http):
    scarce = await make_product(suite, stock=3)
    plenty = await make_product(suite, stock=1000)
    headers = guest()
    before = snapshot(suite)
    error = assert_error(
        await http.post("/api/v1/cart/items", json={"productId": scarce["id"], "quantity": 4}, headers=headers),
        409,
        "INSUFFICIENT_STOCK",
    )
    assert error["details"]["productIds"] == [scarce["id"]]
    assert snapshot(suite) == before  # not even an empty cart was created
    await http.post("/api/v1/cart/items", json={"productId": scarce["id"], "quantity": 2}, headers=headers)
    await http.post("/api/v1/cart/items", json={"productId": plenty["id"], "quantity": 60}, headers=headers)
    before = snapshot(suite)
    # the line would exceed stock (2 + 2 > 3) or 100 (60 + 41)
    assert_error(
        await http.post("/api/v1/cart/items", json={"productId": scarce["id"], "quantity": 2}, headers=headers),
        409,
        "INSUFFICIENT_STOCK",
    )
    error = assert_error(
        await http.post("/api/v1/cart/items", json={"productId": plenty["id"], "quantity": 41}, headers=headers),
        400,
        "VALIDATION_ERROR",
    )
    assert "quantity" in error["details"]["fields"]
    assert_error(
        await http.put(f"/api/v1/cart/items/{scarce['id']}", json={"quantity": 4}, headers=headers),
        409,
        "INSUFFICIENT_STOCK",
    )
    assert snapshot(suite) == before
    # exactly at the limits is fine
    response = await http.post("/api/v1/cart/items", json={"productId": plenty["id"], "quantity": 40}, headers=headers)
    assert response.status_code == 200, response.text
    response = await http.put(f"/api/v1/cart/items/{scarce['id']}", json={"quantity": 3}, headers=headers)
    assert {i["productId"]: i["quantity"] for i in response.json()["data"]["items"]} == {
        scarce["id"]: 3,
        plenty["id"]: 100,
    }


async def test_bad_put_and_delete_inputs_change_nothing(suite, http):
    product = await make_product(suite, stock=10)
    other = await make_product(suite, stock=10)
    headers = guest()
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 2}, headers=headers)
    before = snapshot(suite)
    url = f"/api/v1/cart/items/{product['id']}"
    for body in (
        {"quantity": -1},
        {"quantity": 101},
        {"quantity": "3"},
        {"quantity": 1.5},
        {"quantity": None},
        {},
        {"quantity": 2**63},
        {"quantity": 3, "extra": 1},
    ):
        error = assert_error(await http.put(url, json=body, headers=headers), 400, "VALIDATION_ERROR")
        assert error["details"]["fields"]
    for bad_id in ("not-a-uuid", "123", product["id"][:-1], product["id"].replace("-", "")):
        for response in (
            await http.put(f"/api/v1/cart/items/{bad_id}", json={"quantity": 1}, headers=headers),
            await http.delete(f"/api/v1/cart/items/{bad_id}", headers=headers),
        ):
            error = assert_error(response, 400, "VALIDATION_ERROR")
            assert "productId" in error["details"]["fields"]
    # a product that is not in the cart: nothing to remove
    for response in (
        await http.delete(f"/api/v1/cart/items/{other['id']}", headers=headers),
        await http.put(f"/api/v1/cart/items/{other['id']}", json={"quantity": 0}, headers=headers),
        await http.delete(f"/api/v1/cart/items/{uuid.uuid4()}", headers=headers),
    ):
        assert_error(response, 404, "CART_ITEM_NOT_FOUND")
    assert snapshot(suite) == before


# -- pricing follows the catalog ------------------------------------------------------------------


async def test_pricing_follows_catalog_price_changes(suite, http):
    product = await make_product(suite, price=1000, stock=10)
    headers = guest()
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 3}, headers=headers)
    await set_price(suite, product["id"], 1250)
    cart = (await http.get("/api/v1/cart", headers=headers)).json()["data"]
    assert cart["items"][0]["unitPriceCents"] == 1250 and cart["items"][0]["lineTotalCents"] == 3750
    assert cart["subtotalCents"] == 3750
    # the cart never stored a price
    columns = {
        row[0]
        for row in suite.sql(
            "cart", "SELECT column_name FROM information_schema.columns WHERE table_name IN ('carts', 'cart_items')"
        )
    }
    assert not any("price" in column or "total" in column for column in columns)


async def test_unavailable_lines_when_archived_or_stock_drops(suite, http):
    keep = await make_product(suite, price=500, stock=10)
    gone = await make_product(suite, price=700, stock=10)
    short = await make_product(suite, price=900, stock=10)
    headers = guest()
    for product, quantity in ((keep, 1), (gone, 2), (short, 5)):
        await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": quantity}, headers=headers)
    await archive(suite, gone["id"])
    assert await adjust_stock(suite, short["id"], -6) == 4
    cart = (await http.get("/api/v1/cart", headers=headers)).json()["data"]
    available = {item["productId"]: item["available"] for item in cart["items"]}
    assert available == {keep["id"]: True, gone["id"]: False, short["id"]: False}
    assert cart["subtotalCents"] == 500 and cart["itemCount"] == 1
    # the lines stay (the user decides); restocking makes the line available again
    assert cart_rows(suite, cart["id"]) == {keep["id"]: 1, gone["id"]: 2, short["id"]: 5}
    await adjust_stock(suite, short["id"], 1)
    cart = (await http.get("/api/v1/cart", headers=headers)).json()["data"]
    assert cart["subtotalCents"] == 500 + 5 * 900 and cart["itemCount"] == 6
    # an archived line can still be removed
    response = await http.delete(f"/api/v1/cart/items/{gone['id']}", headers=headers)
    assert response.status_code == 200


async def test_reading_a_cart_is_one_batch_call(suite, http, monkeypatch):
    headers = guest()
    for _ in range(3):
        product = await make_product(suite)
        await http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers=headers)
    servicer = suite.servers["cart"].definition.servicers[0][1]
    catalog = servicer.runtime.clients.catalog
    calls = []
    original = catalog.BatchGetProducts

    def counting(request, **kwargs):
        calls.append(list(request.product_ids))
        return original(request, **kwargs)

    monkeypatch.setattr(catalog, "BatchGetProducts", counting)
    response = await http.get("/api/v1/cart", headers=headers)
    assert len(response.json()["data"]["items"]) == 3
    assert len(calls) == 1 and len(calls[0]) == 3


# -- whose cart -----------------------------------------------------------------------------------


async def test_users_and_sessions_only_reach_their_own_cart(suite, http):
    product = await make_product(suite, stock=20)
    alice, bob = await suite.register(), await suite.register()
    session = str(uuid.uuid4())
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 3}, headers=alice["headers"])
    await http.post(
        "/api/v1/cart/items", json={"productId": product["id"], "quantity": 5}, headers={"X-Session-ID": session}
    )
    alice_cart = cart_id(user_id=alice["user"]["id"])
    bob_view = (await http.get("/api/v1/cart", headers=bob["headers"])).json()["data"]
    assert bob_view["items"] == [] and bob_view["id"] == cart_id(user_id=bob["user"]["id"])
    other_guest = (await http.get("/api/v1/cart", headers=guest())).json()["data"]
    assert other_guest["items"] == []
    # a signed-in user sending a guest's session still gets their own cart
    mixed = (await http.get("/api/v1/cart", headers={**alice["headers"], "X-Session-ID": session})).json()["data"]
    assert mixed["id"] == alice_cart and mixed["items"][0]["quantity"] == 3
    before = snapshot(suite)
    # bob cannot touch alice's line: his own cart has no such line
    assert_error(
        await http.delete(f"/api/v1/cart/items/{product['id']}", headers=bob["headers"]), 404, "CART_ITEM_NOT_FOUND"
    )
    assert (await http.delete("/api/v1/cart", headers=bob["headers"])).status_code == 204
    assert cart_rows(suite, alice_cart) == {product["id"]: 3}
    assert cart_rows(suite, cart_id(session_id=session)) == {product["id"]: 5}
    assert [row for row in snapshot(suite) if row[0] != cart_id(user_id=bob["user"]["id"])] == before


async def test_bad_tokens_are_401_not_a_guest_cart(suite, http):
    product = await make_product(suite)
    before = snapshot(suite)
    for value in ("Bearer nope", "Basic abc", "Bearer", "Bearer a.b.c"):
        headers = {"Authorization": value, **guest()}
        assert_error(await http.get("/api/v1/cart", headers=headers), 401, "UNAUTHENTICATED")
        assert_error(
            await http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers=headers),
            401,
            "UNAUTHENTICATED",
        )
    assert snapshot(suite) == before


async def test_signed_out_access_token_is_refused(suite, http):
    user = await suite.register()
    response = await http.post("/api/v1/auth/logout", headers=user["headers"])
    if response.status_code != 204:
        pytest.skip("logout is not available")
    for _ in range(100):  # revocation reaches verifiers within a few seconds
        response = await http.get("/api/v1/cart", headers=user["headers"])
        if response.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert_error(response, 401, "UNAUTHENTICATED")


# -- merge ----------------------------------------------------------------------------------------


async def test_merge_adds_caps_and_deletes_the_guest_cart(suite, http):
    both = await make_product(suite, price=100, stock=50)
    capped_by_stock = await make_product(suite, price=200, stock=6)
    capped_by_100 = await make_product(suite, price=300, stock=1000)
    guest_only = await make_product(suite, price=400, stock=10)
    archived = await make_product(suite, price=500, stock=10)
    user = await suite.register()
    session = str(uuid.uuid4())
    g = {"X-Session-ID": session}
    for product, quantity in ((both, 3), (capped_by_stock, 4), (capped_by_100, 60), (guest_only, 2), (archived, 1)):
        response = await http.post(
            "/api/v1/cart/items", json={"productId": product["id"], "quantity": quantity}, headers=g
        )
        assert response.status_code == 200, response.text
    for product, quantity in ((both, 2), (capped_by_stock, 5), (capped_by_100, 70)):
        response = await http.post(
            "/api/v1/cart/items", json={"productId": product["id"], "quantity": quantity}, headers=user["headers"]
        )
        assert response.status_code == 200, response.text
    await archive(suite, archived["id"])
    response = await http.post("/api/v1/cart/merge", headers={**user["headers"], **g})
    assert response.status_code == 200, response.text
    cart = response.json()["data"]
    assert cart["id"] == cart_id(user_id=user["user"]["id"])
    quantities = {item["productId"]: item["quantity"] for item in cart["items"]}
    assert quantities == {both["id"]: 5, capped_by_stock["id"]: 6, capped_by_100["id"]: 100, guest_only["id"]: 2}
    assert all(item["available"] for item in cart["items"])
    assert cart["subtotalCents"] == 5 * 100 + 6 * 200 + 100 * 300 + 2 * 400
    assert cart_rows(suite, cart["id"]) == quantities
    # the guest cart is gone
    guest_cart = cart_id(session_id=session)
    assert suite.sql("cart", "SELECT count(*) FROM carts WHERE id = %s", (guest_cart,)) == [(0,)]
    assert cart_rows(suite, guest_cart) == {}
    assert (await http.get("/api/v1/cart", headers=g)).json()["data"]["items"] == []
    # merging again (nothing left) changes nothing
    again = await http.post("/api/v1/cart/merge", headers={**user["headers"], **g})
    assert again.status_code == 200 and again.json()["data"]["items"] == cart["items"]


async def test_merge_refusals_change_nothing(suite, http):
    product = await make_product(suite, stock=10)
    user = await suite.register()
    session = str(uuid.uuid4())
    await http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers={"X-Session-ID": session})
    before = snapshot(suite)
    assert_error(await http.post("/api/v1/cart/merge", headers={"X-Session-ID": session}), 401, "UNAUTHENTICATED")
    error = assert_error(await http.post("/api/v1/cart/merge", headers=user["headers"]), 400, "VALIDATION_ERROR")
    assert "X-Session-ID" in error["details"]["fields"]
    for bad in ("nope", "", session + "0"):
        assert_error(
            await http.post("/api/v1/cart/merge", headers={**user["headers"], "X-Session-ID": bad}),
            400,
            "VALIDATION_ERROR",
        )
    assert snapshot(suite) == before


# -- Idempotency-Key on POST /cart/items ---------------------------------------------------------


async def test_idempotency_key_replays_without_adding_again(suite, http):
    product = await make_product(suite, price=300, stock=50)
    other = await make_product(suite, stock=50)
    headers = {**guest(), "Idempotency-Key": "add-once-1"}
    body = {"productId": product["id"], "quantity": 2}
    first = await http.post("/api/v1/cart/items", json=body, headers=headers)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = await http.post("/api/v1/cart/items", json=body, headers=headers)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    cart = first.json()["data"]["id"]
    assert cart_rows(suite, cart) == {product["id"]: 2}
    # ten concurrent repeats of a new key add once
    key = {**headers, "Idempotency-Key": "add-once-2"}
    responses = await asyncio.gather(*(http.post("/api/v1/cart/items", json=body, headers=key) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    assert cart_rows(suite, cart) == {product["id"]: 4}
    # the same key with another body is refused and changes nothing
    before = snapshot(suite)
    for changed in ({"productId": product["id"], "quantity": 3}, {"productId": other["id"], "quantity": 2}):
        assert_error(
            await http.post("/api/v1/cart/items", json=changed, headers=headers), 422, "IDEMPOTENCY_KEY_REUSED"
        )
    for bad in ("x" * 129, ""):  # one rule for every key (shop.lib.idempotency): 1..128
        error = assert_error(
            await http.post("/api/v1/cart/items", json=body, headers={**headers, "Idempotency-Key": bad}),
            400,
            "VALIDATION_ERROR",
        )
        assert "Idempotency-Key" in error["details"]["fields"]
    assert snapshot(suite) == before
    # keys are scoped to the cart: another guest may use the same key
    elsewhere = {**guest(), "Idempotency-Key": "add-once-1"}
    response = await http.post("/api/v1/cart/items", json=body, headers=elsewhere)
    assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert response.json()["data"]["items"][0]["quantity"] == 2
    # the longest key (128 characters) is stored and replayed like any other
    longest = {**guest(), "Idempotency-Key": "k" * 128}
    first = await http.post("/api/v1/cart/items", json=body, headers=longest)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers, first.text
    again = await http.post("/api/v1/cart/items", json=body, headers=longest)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"


async def test_a_refused_add_does_not_burn_its_key(suite, http):
    product = await make_product(suite, stock=1)
    headers = {**guest(), "Idempotency-Key": "retry-after-restock"}
    body = {"productId": product["id"], "quantity": 3}
    assert_error(await http.post("/api/v1/cart/items", json=body, headers=headers), 409, "INSUFFICIENT_STOCK")
    await adjust_stock(suite, product["id"], 5)
    response = await http.post("/api/v1/cart/items", json=body, headers=headers)
    assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert response.json()["data"]["items"][0]["quantity"] == 3


# -- concurrency ----------------------------------------------------------------------------------


async def test_concurrent_adds_to_one_line_lose_no_update(suite, http):
    product = await make_product(suite, stock=100)
    user = await suite.register()
    session = {"X-Session-ID": str(uuid.uuid4())}
    for headers, owner in (
        (user["headers"], cart_id(user_id=user["user"]["id"])),
        (session, cart_id(session_id=session["X-Session-ID"])),
    ):
        responses = await asyncio.gather(
            *(http.post("/api/v1/cart/items", json={"productId": product["id"]}, headers=headers) for _ in range(20))
        )
        assert [r.status_code for r in responses] == [200] * 20
        assert cart_rows(suite, owner) == {product["id"]: 20}
        assert sorted(r.json()["data"]["items"][0]["quantity"] for r in responses)[-1] == 20


async def test_concurrent_adds_never_exceed_stock(suite, http):
    product = await make_product(suite, stock=7)
    headers = guest()
    responses = await asyncio.gather(
        *(
            http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 2}, headers=headers)
            for _ in range(10)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 3 + [409] * 7
    assert cart_rows(suite, cart_id(session_id=headers["X-Session-ID"])) == {product["id"]: 6}


async def test_concurrent_merges_add_the_guest_cart_once(suite, http):
    product = await make_product(suite, stock=100)
    user = await suite.register()
    session = {"X-Session-ID": str(uuid.uuid4())}
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 3}, headers=session)
    await http.post("/api/v1/cart/items", json={"productId": product["id"], "quantity": 2}, headers=user["headers"])
    responses = await asyncio.gather(
        *(http.post("/api/v1/cart/merge", headers={**user["headers"], **session}) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [200] * 5
    assert cart_rows(suite, cart_id(user_id=user["user"]["id"])) == {product["id"]: 5}
    assert suite.sql(
        "cart", "SELECT count(*) FROM carts WHERE id = %s", (cart_id(session_id=session["X-Session-ID"]),)
    ) == [(0,)]


async def test_openapi_documents_the_cart(http):
    spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/cart": {"get", "delete"},
        "/api/v1/cart/items": {"post"},
        "/api/v1/cart/items/{productId}": {"put", "delete"},
        "/api/v1/cart/merge": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert paths[path][method]["summary"]
    assert any(p["name"] == "X-Session-ID" for p in paths["/api/v1/cart"]["get"]["parameters"])
