"""Catalog through the real gateway: products (create, read, update, archive, stock), roles and
ownership, categories, reviews and the wishlist. Every bad input is a clear 4xx that changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import pytest
import pytest_asyncio

from shop.catalog.v1 import catalog_pb2

API = "/api/v1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def people(suite):
    admin, seller, other_seller, customer = await asyncio.gather(
        suite.admin(), suite.user_with_role("SELLER"), suite.user_with_role("SELLER"), suite.register()
    )
    return {"admin": admin, "seller": seller, "other": other_seller, "customer": customer}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def category(suite, people):
    slug = f"gw-{uuid.uuid4().hex[:8]}"
    response = await suite.http.post(
        f"{API}/categories", json={"slug": slug, "name": "Gateway tests"}, headers=people["admin"]["headers"]
    )
    assert response.status_code == 201, response.text
    return slug


def product_body(category: str, **overrides):
    return {
        "sku": f"SKU-{uuid.uuid4().hex[:10]}",
        "name": "Trail Runner 3",
        "description": "A light trail shoe.",
        "priceCents": 12900,
        "currency": "USD",
        "categorySlug": category,
        "brand": "Stride",
        "images": ["https://images.shop.example/trail-runner-3.jpg"],
        "stock": 10,
        **overrides,
    }


async def create(suite, who, category, **overrides):
    response = await suite.http.post(
        f"{API}/products", json=product_body(category, **overrides), headers=who["headers"]
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def register_many(suite, count: int, batch: int = 4) -> list:
    """Users for a test, registered a few at a time: bcrypt is slow on purpose, and a burst of
    registrations on a busy 2-core machine must not hit the gateway's deadline. Only what a test
    does with the users afterwards is meant to be concurrent."""
    users: list = []
    while len(users) < count:
        users += await asyncio.gather(*(suite.register() for _ in range(min(batch, count - len(users)))))
    return users


def product_count(suite) -> int:
    return suite.sql("catalog", "SELECT count(*) FROM products")[0][0]


def row(suite, product_id):
    return suite.sql(
        "catalog",
        "SELECT sku, name, price_cents, compare_at_price_cents, brand, stock, status, updated_at FROM products WHERE id = %s",
        (product_id,),
    )


def error_of(response):
    return response.json()["error"]


# -- products --------------------------------------------------------------------------------------


async def test_create_and_get_product_shape(suite, people, category):
    body = product_body(category, compareAtPriceCents=15900)
    response = await suite.http.post(f"{API}/products", json=body, headers=people["admin"]["headers"])
    assert response.status_code == 201, response.text
    product = response.json()["data"]
    assert set(product) == {
        "id",
        "sku",
        "name",
        "description",
        "priceCents",
        "compareAtPriceCents",
        "currency",
        "categorySlug",
        "brand",
        "images",
        "stock",
        "status",
        "sellerId",
        "rating",
        "createdAt",
        "updatedAt",
    }
    assert product["sku"] == body["sku"] and product["priceCents"] == 12900 and product["compareAtPriceCents"] == 15900
    assert product["status"] == "ACTIVE" and product["sellerId"] is None
    assert product["rating"] == {"average": 0.0, "count": 0}
    assert product["createdAt"].endswith("Z")
    fetched = await suite.http.get(f"{API}/products/{product['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["data"] == product
    # defaults: no compare-at price, no brand
    minimal = await create(suite, people["admin"], category, brand=None, images=[])
    assert minimal["compareAtPriceCents"] is None and minimal["brand"] is None and minimal["images"] == []


BAD_CREATES = [
    ({"priceCents": 0}, "priceCents"),
    ({"priceCents": -5}, "priceCents"),
    ({"priceCents": 10**20}, "priceCents"),
    ({"priceCents": 10**12}, "priceCents"),
    ({"priceCents": "129"}, "priceCents"),
    ({"priceCents": 12.5}, "priceCents"),
    ({"compareAtPriceCents": 12900}, "compareAtPriceCents"),
    ({"compareAtPriceCents": 100}, "compareAtPriceCents"),
    ({"compareAtPriceCents": -1}, "compareAtPriceCents"),
    ({"currency": "usd"}, "currency"),
    ({"currency": "US"}, "currency"),
    ({"currency": "USDD"}, "currency"),
    ({"stock": -1}, "stock"),
    ({"stock": 2**40}, "stock"),
    ({"stock": 10**7}, "stock"),
    ({"stock": True}, "stock"),
    ({"sku": ""}, "sku"),
    ({"sku": "bad sku!"}, "sku"),
    ({"sku": "A" * 65}, "sku"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "N" * 201}, "name"),
    ({"name": None}, "name"),
    ({"description": "d" * 5001}, "description"),
    ({"brand": "b" * 101}, "brand"),
    ({"images": [f"https://img.example/{i}.jpg" for i in range(11)]}, "images"),
    ({"images": ["ftp://img.example/a.jpg"]}, "images"),
    ({"images": ["not a url"]}, "images"),
    ({"images": ["javascript:alert(1)"]}, "images"),
    ({"images": "https://img.example/a.jpg"}, "images"),
    ({"categorySlug": "no-such-category"}, "categorySlug"),
    ({"status": "ARCHIVED"}, "status"),
    ({"status": "LIVE"}, "status"),
    ({"unexpected": 1}, "unexpected"),
    ({"currency": "USD\n"}, "currency"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_CREATES)
async def test_create_product_rejects_bad_input(suite, people, category, overrides, field):
    before = product_count(suite)
    response = await suite.http.post(
        f"{API}/products", json=product_body(category, **overrides), headers=people["admin"]["headers"]
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"]["fields"], error
    assert product_count(suite) == before


async def test_create_product_missing_fields_and_bad_json(suite, people, category):
    before = product_count(suite)
    body = product_body(category)
    del body["sku"], body["priceCents"]
    response = await suite.http.post(f"{API}/products", json=body, headers=people["admin"]["headers"])
    assert response.status_code == 400
    assert {"sku", "priceCents"} <= set(error_of(response)["details"]["fields"])
    response = await suite.http.post(
        f"{API}/products", content=b"{nope", headers={**people["admin"]["headers"], "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    response = await suite.http.post(f"{API}/products", json=[1, 2], headers=people["admin"]["headers"])
    assert response.status_code == 400
    assert product_count(suite) == before


async def test_sku_is_unique(suite, people, category):
    first = await create(suite, people["admin"], category)
    response = await suite.http.post(
        f"{API}/products", json=product_body(category, sku=first["sku"]), headers=people["seller"]["headers"]
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "SKU_TAKEN"
    assert suite.sql("catalog", "SELECT count(*) FROM products WHERE sku = %s", (first["sku"],)) == [(1,)]
    # concurrent creates with one SKU: exactly one wins
    sku = f"RACE-{uuid.uuid4().hex[:8]}"
    responses = await asyncio.gather(
        *(
            suite.http.post(f"{API}/products", json=product_body(category, sku=sku), headers=people["admin"]["headers"])
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert suite.sql("catalog", "SELECT count(*) FROM products WHERE sku = %s", (sku,)) == [(1,)]


async def test_create_product_idempotency_key(suite, people, category):
    key = uuid.uuid4().hex
    body = product_body(category)
    headers = {**people["admin"]["headers"], "Idempotency-Key": key}
    first = await suite.http.post(f"{API}/products", json=body, headers=headers)
    again = await suite.http.post(f"{API}/products", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert suite.sql("catalog", "SELECT count(*) FROM products WHERE sku = %s", (body["sku"],)) == [(1,)]
    reused = await suite.http.post(f"{API}/products", json=product_body(category), headers=headers)
    assert reused.status_code == 422
    assert error_of(reused)["code"] == "IDEMPOTENCY_KEY_REUSED"
    # the same key from another user is another request
    other = await suite.http.post(
        f"{API}/products", json=product_body(category), headers={**people["seller"]["headers"], "Idempotency-Key": key}
    )
    assert other.status_code == 201
    too_long = await suite.http.post(
        f"{API}/products",
        json=product_body(category),
        headers={**people["admin"]["headers"], "Idempotency-Key": "k" * 129},
    )
    assert too_long.status_code == 400  # one rule for every key (shop.lib.idempotency): 1..128


async def test_roles_and_ownership(suite, people, category):
    before = product_count(suite)
    anonymous = await suite.http.post(f"{API}/products", json=product_body(category))
    assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "UNAUTHENTICATED"
    customer = await suite.http.post(
        f"{API}/products", json=product_body(category), headers=people["customer"]["headers"]
    )
    assert customer.status_code == 403 and error_of(customer)["code"] == "FORBIDDEN"
    assert product_count(suite) == before

    mine = await create(suite, people["seller"], category)
    assert mine["sellerId"] == people["seller"]["user"]["id"]
    snapshot = row(suite, mine["id"])
    for who in ("other", "customer"):
        headers = people[who]["headers"]
        responses = [
            await suite.http.patch(f"{API}/products/{mine['id']}", json={"name": "Mine now"}, headers=headers),
            await suite.http.delete(f"{API}/products/{mine['id']}", headers=headers),
            await suite.http.post(
                f"{API}/products/{mine['id']}/stock-adjustments", json={"delta": -5, "reason": "theft"}, headers=headers
            ),
        ]
        assert [r.status_code for r in responses] == [403, 403, 403], [r.text for r in responses]
        assert all(error_of(r)["code"] == "FORBIDDEN" for r in responses)
    assert row(suite, mine["id"]) == snapshot
    # the owner and an admin may
    owner = await suite.http.patch(
        f"{API}/products/{mine['id']}", json={"name": "Renamed by owner"}, headers=people["seller"]["headers"]
    )
    assert owner.status_code == 200 and owner.json()["data"]["name"] == "Renamed by owner"
    admin = await suite.http.patch(
        f"{API}/products/{mine['id']}", json={"name": "Renamed by admin"}, headers=people["admin"]["headers"]
    )
    assert admin.status_code == 200 and admin.json()["data"]["sellerId"] == people["seller"]["user"]["id"]


async def test_draft_visible_only_to_admin_and_owner(suite, people, category):
    draft = await create(suite, people["seller"], category, status="DRAFT")
    assert draft["status"] == "DRAFT"
    url = f"{API}/products/{draft['id']}"
    assert (await suite.http.get(url, headers=people["seller"]["headers"])).status_code == 200
    assert (await suite.http.get(url, headers=people["admin"]["headers"])).status_code == 200
    headers: dict[str, str]
    for headers in ({}, people["customer"]["headers"], people["other"]["headers"]):
        response = await suite.http.get(url, headers=headers)
        assert response.status_code == 404 and error_of(response)["code"] == "PRODUCT_NOT_FOUND"
    # another seller cannot even see it: 404, not 403
    response = await suite.http.patch(url, json={"name": "x"}, headers=people["other"]["headers"])
    assert response.status_code == 404
    listing = await suite.http.get(f"{API}/products", params={"category": category, "pageSize": 100})
    assert draft["id"] not in {p["id"] for p in listing.json()["data"]}
    # publishing makes it public
    published = await suite.http.patch(url, json={"status": "ACTIVE"}, headers=people["seller"]["headers"])
    assert published.json()["data"]["status"] == "ACTIVE"
    assert (await suite.http.get(url)).status_code == 200


async def test_patch_is_partial_and_validated(suite, people, category):
    product = await create(suite, people["admin"], category, compareAtPriceCents=20000)
    url, headers = f"{API}/products/{product['id']}", people["admin"]["headers"]
    response = await suite.http.patch(url, json={"name": "Trail Runner 4", "priceCents": 9900}, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["name"], data["priceCents"], data["compareAtPriceCents"], data["brand"]) == (
        "Trail Runner 4",
        9900,
        20000,
        "Stride",
    )
    assert data["sku"] == product["sku"] and data["description"] == product["description"]
    assert datetime.fromisoformat(data["updatedAt"]) >= datetime.fromisoformat(product["updatedAt"])
    cleared = await suite.http.patch(url, json={"compareAtPriceCents": None, "brand": None}, headers=headers)
    assert cleared.json()["data"]["compareAtPriceCents"] is None and cleared.json()["data"]["brand"] is None
    images = await suite.http.patch(url, json={"images": []}, headers=headers)
    assert images.json()["data"]["images"] == []

    taken = await create(suite, people["admin"], category)
    snapshot = row(suite, product["id"])
    bad = [
        ({"priceCents": 0}, 400, "priceCents"),
        ({"compareAtPriceCents": 9900}, 400, "compareAtPriceCents"),
        ({"compareAtPriceCents": 0}, 400, "compareAtPriceCents"),
        ({"priceCents": 30000, "compareAtPriceCents": 25000}, 400, "compareAtPriceCents"),
        ({"categorySlug": "no-such-category"}, 400, "categorySlug"),
        ({"name": None}, 400, "name"),
        ({"name": ""}, 400, "name"),
        ({"currency": "eur"}, 400, "currency"),
        ({"stock": 5}, 400, "stock"),
        ({"status": "ARCHIVED"}, 400, "status"),
        ({"images": ["http://"]}, 400, "images"),
        ({"sku": taken["sku"]}, 409, None),
    ]
    for body, status, field in bad:
        response = await suite.http.patch(url, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        if field:
            assert field in error_of(response)["details"]["fields"], (body, response.text)
        else:
            assert error_of(response)["code"] == "SKU_TAKEN"
    assert row(suite, product["id"]) == snapshot


async def test_delete_archives(suite, people, category):
    product = await create(suite, people["seller"], category)
    url = f"{API}/products/{product['id']}"
    response = await suite.http.delete(url, headers=people["seller"]["headers"])
    assert response.status_code == 204 and response.content == b""
    assert suite.sql("catalog", "SELECT status FROM products WHERE id = %s", (product["id"],)) == [("ARCHIVED",)]
    headers: dict[str, str]
    for headers in ({}, people["admin"]["headers"], people["seller"]["headers"]):
        response = await suite.http.get(url, headers=headers)
        assert response.status_code == 404 and error_of(response)["code"] == "PRODUCT_NOT_FOUND"
    listing = await suite.http.get(f"{API}/products", params={"category": category, "pageSize": 100})
    assert product["id"] not in {p["id"] for p in listing.json()["data"]}
    # deleting again is fine; changing an archived product is not
    assert (await suite.http.delete(url, headers=people["admin"]["headers"])).status_code == 204
    assert (await suite.http.patch(url, json={"name": "x"}, headers=people["admin"]["headers"])).status_code == 404
    # old orders still resolve it
    batch = await suite.stub("catalog").BatchGetProducts(
        catalog_pb2.BatchGetProductsRequest(product_ids=[product["id"]])
    )
    assert [p.status for p in batch.products] == [catalog_pb2.PRODUCT_STATUS_ARCHIVED]


async def test_malformed_and_unknown_product_ids(suite, people):
    headers = people["admin"]["headers"]
    unknown = str(uuid.uuid4())
    for product_id, status, code in (
        ("not-a-uuid", 400, "VALIDATION_ERROR"),
        ("1234", 400, "VALIDATION_ERROR"),
        (unknown, 404, "PRODUCT_NOT_FOUND"),
    ):
        responses = [
            await suite.http.get(f"{API}/products/{product_id}"),
            await suite.http.patch(f"{API}/products/{product_id}", json={"name": "x"}, headers=headers),
            await suite.http.delete(f"{API}/products/{product_id}", headers=headers),
            await suite.http.post(
                f"{API}/products/{product_id}/stock-adjustments", json={"delta": 1, "reason": "count"}, headers=headers
            ),
            await suite.http.get(f"{API}/products/{product_id}/reviews"),
            await suite.http.post(f"{API}/products/{product_id}/reviews", json={"rating": 5}, headers=headers),
            await suite.http.put(f"{API}/wishlist/{product_id}", headers=headers),
        ]
        for response in responses:
            assert response.status_code == status, response.text
            assert error_of(response)["code"] == code
            if status == 400:
                assert "productId" in error_of(response)["details"]["fields"]
    assert (await suite.http.delete(f"{API}/wishlist/not-a-uuid", headers=headers)).status_code == 400


# -- stock adjustments -----------------------------------------------------------------------------


async def test_stock_adjustments(suite, people, category):
    product = await create(suite, people["seller"], category, stock=10)
    url, headers = f"{API}/products/{product['id']}/stock-adjustments", people["seller"]["headers"]
    response = await suite.http.post(url, json={"delta": 5, "reason": "Delivery"}, headers=headers)
    assert response.status_code == 200 and response.json()["data"] == {"stock": 15}
    response = await suite.http.post(url, json={"delta": -16, "reason": "Count"}, headers=headers)
    assert response.status_code == 409 and error_of(response)["code"] == "INSUFFICIENT_STOCK"
    for body, field in (
        ({"delta": 0, "reason": "x"}, "delta"),
        ({"delta": 10**7, "reason": "x"}, "delta"),
        ({"delta": 2**40, "reason": "x"}, "delta"),
        ({"delta": "5", "reason": "x"}, "delta"),
        ({"delta": 1, "reason": ""}, "reason"),
        ({"delta": 1}, "reason"),
        ({"delta": 1, "reason": "r" * 201}, "reason"),
        ({"delta": 1, "reason": "line\x01break"}, "reason"),
        ({"delta": 1, "reason": "two\nlines"}, "reason"),
    ):
        response = await suite.http.post(url, json=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert field in error_of(response)["details"]["fields"]
    assert row(suite, product["id"])[0][5] == 15
    too_long = await suite.http.post(
        url, json={"delta": 1, "reason": "x"}, headers={**headers, "Idempotency-Key": "k" * 129}
    )
    assert too_long.status_code == 400 and "Idempotency-Key" in error_of(too_long)["details"]["fields"]
    assert row(suite, product["id"])[0][5] == 15
    # the one key rule (shop.lib.idempotency): up to 128 characters, as documented
    keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex * 4}
    first = await suite.http.post(url, json={"delta": -3, "reason": "Damaged"}, headers=keyed)
    again = await suite.http.post(url, json={"delta": -3, "reason": "Damaged"}, headers=keyed)
    assert first.json()["data"] == again.json()["data"] == {"stock": 12}
    assert row(suite, product["id"])[0][5] == 12
    assert suite.sql(
        "catalog", "SELECT count(*), sum(delta) FROM stock_adjustments WHERE product_id = %s", (product["id"],)
    ) == [(2, 2)]


async def test_concurrent_stock_removals_never_go_below_zero(suite, people, category):
    product = await create(suite, people["admin"], category, stock=10)
    url = f"{API}/products/{product['id']}/stock-adjustments"
    responses = await asyncio.gather(
        *(
            suite.http.post(url, json={"delta": -1, "reason": "sold offline"}, headers=people["admin"]["headers"])
            for _ in range(25)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 10 + [409] * 15
    assert row(suite, product["id"])[0][5] == 0


# -- categories ------------------------------------------------------------------------------------


async def test_categories(suite, people):
    parent, child = f"p-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    headers = people["admin"]["headers"]
    response = await suite.http.post(f"{API}/categories", json={"slug": parent, "name": "Parent"}, headers=headers)
    assert response.status_code == 201
    assert response.json()["data"] == {"slug": parent, "name": "Parent", "parentSlug": None, "productCount": 0}
    response = await suite.http.post(
        f"{API}/categories", json={"slug": child, "name": "Child", "parentSlug": parent}, headers=headers
    )
    assert response.status_code == 201 and response.json()["data"]["parentSlug"] == parent
    await create(suite, people["admin"], child)
    await create(suite, people["admin"], child)
    await create(suite, people["admin"], parent)
    await create(suite, people["admin"], child, status="DRAFT")
    listing = await suite.http.get(f"{API}/categories")
    assert listing.status_code == 200
    by_slug = {c["slug"]: c for c in listing.json()["data"]}
    assert by_slug[child] == {"slug": child, "name": "Child", "parentSlug": parent, "productCount": 2}
    assert by_slug[parent]["productCount"] == 3
    assert listing.json()["page"]["totalSize"] == len(by_slug)

    count = suite.sql("catalog", "SELECT count(*) FROM categories")[0][0]
    duplicate = await suite.http.post(f"{API}/categories", json={"slug": child, "name": "Again"}, headers=headers)
    assert duplicate.status_code == 409 and error_of(duplicate)["code"] == "CATEGORY_EXISTS"
    for body, field in (
        ({"slug": "Bad Slug", "name": "x"}, "slug"),
        ({"slug": "a--b", "name": "x"}, "slug"),
        ({"slug": "s" * 65, "name": "x"}, "slug"),
        ({"slug": "okay-slug", "name": ""}, "name"),
        ({"slug": "okay-slug", "name": "x", "parentSlug": "nope"}, "parentSlug"),
        ({"slug": "okay-slug"}, "name"),
        ({"slug": 5, "name": "x"}, "slug"),
        # a slug is an identifier, taken as sent (the documented pattern), not trimmed
        ({"slug": " okay-slug ", "name": "x"}, "slug"),
        ({"slug": "okay-slug\n", "name": "x"}, "slug"),
        # a name is one line of text: no control characters
        ({"slug": "okay-slug", "name": "a\x1eb"}, "name"),
        ({"slug": "okay-slug", "name": "tab\there"}, "name"),
        # no parent is null or left out; "" names no category
        ({"slug": "okay-slug", "name": "x", "parentSlug": ""}, "parentSlug"),
        ({"slug": "okay-slug", "name": "x", "parentSlug": f" {parent} "}, "parentSlug"),
    ):
        response = await suite.http.post(f"{API}/categories", json=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert field in error_of(response)["details"]["fields"]
    for who, status in (("customer", 403), ("seller", 403)):
        response = await suite.http.post(
            f"{API}/categories", json={"slug": "nope-x", "name": "x"}, headers=people[who]["headers"]
        )
        assert response.status_code == status
    assert (await suite.http.post(f"{API}/categories", json={"slug": "nope-x", "name": "x"})).status_code == 401
    assert suite.sql("catalog", "SELECT count(*) FROM categories")[0][0] == count


# -- reviews ---------------------------------------------------------------------------------------


async def test_reviews(suite, people, category):
    product = await create(suite, people["admin"], category)
    url = f"{API}/products/{product['id']}/reviews"
    buyer = await suite.register()
    await suite.stub("catalog").RecordPurchases(
        catalog_pb2.RecordPurchasesRequest(
            order_id=str(uuid.uuid4()), user_id=buyer["user"]["id"], product_ids=[product["id"]]
        )
    )
    response = await suite.http.post(
        url, json={"rating": 4, "title": "Good", "body": "Comfy."}, headers=buyer["headers"]
    )
    assert response.status_code == 201, response.text
    review = response.json()["data"]
    assert review["verifiedPurchase"] is True and review["userId"] == buyer["user"]["id"]
    assert (review["rating"], review["title"], review["body"]) == (4, "Good", "Comfy.")
    response = await suite.http.post(url, json={"rating": 2}, headers=people["customer"]["headers"])
    assert response.status_code == 201 and response.json()["data"]["verifiedPurchase"] is False
    rating = (await suite.http.get(f"{API}/products/{product['id']}")).json()["data"]["rating"]
    assert rating == {"average": 3.0, "count": 2}

    duplicate = await suite.http.post(url, json={"rating": 5}, headers=buyer["headers"])
    assert duplicate.status_code == 409 and error_of(duplicate)["code"] == "REVIEW_EXISTS"
    newcomer = await suite.register()
    for body, field in (
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({}, "rating"),
        ({"rating": 2**40}, "rating"),
        ({"rating": 5, "title": "t" * 121}, "title"),
        ({"rating": 5, "body": "b" * 5001}, "body"),
    ):
        response = await suite.http.post(url, json=body, headers=newcomer["headers"])
        assert response.status_code == 400, (body, response.text)
        assert field in error_of(response)["details"]["fields"]
    assert (await suite.http.post(url, json={"rating": 5})).status_code == 401
    assert suite.sql("catalog", "SELECT count(*) FROM reviews WHERE product_id = %s", (product["id"],)) == [(2,)]
    assert (await suite.http.get(f"{API}/products/{product['id']}")).json()["data"]["rating"]["count"] == 2

    listing = await suite.http.get(url)
    assert listing.status_code == 200
    assert [r["rating"] for r in listing.json()["data"]] == [2, 4]  # newest first
    assert listing.json()["page"] == {"nextPageToken": None, "totalSize": 2}


async def test_reviews_pagination_and_bad_tokens(suite, people, category):
    product = await create(suite, people["admin"], category)
    url = f"{API}/products/{product['id']}/reviews"
    users = await register_many(suite, 7)
    for user in users:
        assert (await suite.http.post(url, json={"rating": 5}, headers=user["headers"])).status_code == 201
    seen, token = [], None
    while True:
        response = await suite.http.get(url, params={"pageSize": 3, **({"pageToken": token} if token else {})})
        assert response.status_code == 200
        body = response.json()
        assert body["page"]["totalSize"] == 7
        seen += [r["id"] for r in body["data"]]
        token = body["page"]["nextPageToken"]
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert [r["userId"] for r in (await suite.http.get(url, params={"pageSize": 100})).json()["data"]] == [
        u["user"]["id"] for u in reversed(users)
    ]
    first = (await suite.http.get(url, params={"pageSize": 3})).json()["page"]["nextPageToken"]
    other = await create(suite, people["admin"], category)
    for params in ({"pageToken": "garbage"}, {"pageToken": first[:-2] + "AA"}, {"pageSize": 0}, {"pageSize": 101}):
        response = await suite.http.get(url, params=params)
        assert response.status_code == 400, params
    response = await suite.http.get(f"{API}/products/{other['id']}/reviews", params={"pageToken": first})
    assert response.status_code == 400 and error_of(response)["code"] == "INVALID_PAGE_TOKEN"


async def test_concurrent_reviews_keep_the_average_right(suite, people, category):
    product = await create(suite, people["admin"], category)
    url = f"{API}/products/{product['id']}/reviews"
    users = await register_many(suite, 20)
    ratings = [(i % 5) + 1 for i in range(20)]
    ratings[0] = 5  # mean 3.05: a lost update would show
    responses = await asyncio.gather(
        *(suite.http.post(url, json={"rating": r}, headers=u["headers"]) for u, r in zip(users, ratings, strict=True))
    )
    assert [r.status_code for r in responses] == [201] * 20
    rating = (await suite.http.get(f"{API}/products/{product['id']}")).json()["data"]["rating"]
    assert rating == {"average": round(sum(ratings) / 20, 2), "count": 20}
    # the same user racing with itself gets exactly one review
    racer = await suite.register()
    responses = await asyncio.gather(
        *(suite.http.post(url, json={"rating": 1}, headers=racer["headers"]) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert (await suite.http.get(f"{API}/products/{product['id']}")).json()["data"]["rating"]["count"] == 21


# -- wishlist --------------------------------------------------------------------------------------


async def test_wishlist(suite, people, category):
    user = await suite.register()
    headers = user["headers"]
    a, b = await create(suite, people["admin"], category), await create(suite, people["admin"], category)
    for product in (a, b, a):
        response = await suite.http.put(f"{API}/wishlist/{product['id']}", headers=headers)
        assert response.status_code == 204
    assert suite.sql("catalog", "SELECT count(*) FROM wishlist_items WHERE user_id = %s", (user["user"]["id"],)) == [
        (2,)
    ]
    listing = await suite.http.get(f"{API}/wishlist", headers=headers)
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["data"]] == [b["id"], a["id"]]
    assert listing.json()["data"][0]["sku"] == b["sku"]
    assert listing.json()["page"]["totalSize"] == 2
    # another user's wishlist is separate
    theirs = await suite.http.get(f"{API}/wishlist", headers=people["customer"]["headers"])
    assert a["id"] not in {p["id"] for p in theirs.json()["data"]}
    unknown = await suite.http.put(f"{API}/wishlist/{uuid.uuid4()}", headers=headers)
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "PRODUCT_NOT_FOUND"
    assert (await suite.http.put(f"{API}/wishlist/{a['id']}")).status_code == 401
    assert (await suite.http.get(f"{API}/wishlist")).status_code == 401
    assert (await suite.http.delete(f"{API}/wishlist/{a['id']}", headers=headers)).status_code == 204
    assert (await suite.http.delete(f"{API}/wishlist/{a['id']}", headers=headers)).status_code == 204
    assert [p["id"] for p in (await suite.http.get(f"{API}/wishlist", headers=headers)).json()["data"]] == [b["id"]]
    # an archived product drops out of the list
    await suite.http.delete(f"{API}/products/{b['id']}", headers=people["admin"]["headers"])
    assert (await suite.http.get(f"{API}/wishlist", headers=headers)).json()["data"] == []
    archived = await suite.http.put(f"{API}/wishlist/{b['id']}", headers=headers)
    assert archived.status_code == 404


async def test_catalog_routes_are_documented(suite):
    spec = (await suite.http.get("/openapi.json")).json()
    routes = {
        ("get", "/api/v1/products"),
        ("post", "/api/v1/products"),
        ("get", "/api/v1/products/{productId}"),
        ("patch", "/api/v1/products/{productId}"),
        ("delete", "/api/v1/products/{productId}"),
        ("post", "/api/v1/products/{productId}/stock-adjustments"),
        ("get", "/api/v1/categories"),
        ("post", "/api/v1/categories"),
        ("get", "/api/v1/products/{productId}/reviews"),
        ("post", "/api/v1/products/{productId}/reviews"),
        ("get", "/api/v1/wishlist"),
        ("put", "/api/v1/wishlist/{productId}"),
        ("delete", "/api/v1/wishlist/{productId}"),
    }
    for method, path in routes:
        operation = spec["paths"][path][method]
        assert operation["summary"], (method, path)
    assert "404" in spec["paths"]["/api/v1/products/{productId}"]["get"]["responses"]
    product = spec["components"]["schemas"]["Product"]["properties"]
    assert {"priceCents", "compareAtPriceCents", "rating", "sellerId"} <= set(product)


async def test_nul_characters_are_bad_input_not_500(suite, people, category):
    headers = people["admin"]["headers"]
    for params in ({"q": "a\x00b"}, {"brand": "a\x00b"}, {"category": "a\x00b"}):
        response = await suite.http.get(f"{API}/products", params=params)
        assert response.status_code == 400, (params, response.text)
    before = product_count(suite)
    for overrides in (
        {"name": "a\x00b"},
        {"sku": "A\x00B"},
        {"description": "\x00"},
        {"brand": "b\x00"},
        {"categorySlug": "c\x00"},
        {"images": ["https://img.example/a\x00.jpg"]},
    ):
        response = await suite.http.post(f"{API}/products", json=product_body(category, **overrides), headers=headers)
        assert response.status_code == 400, (overrides, response.text)
    assert product_count(suite) == before
    for body in ({"slug": "nul-cat", "name": "a\x00b"}, {"slug": "nul-cat", "name": "x", "parentSlug": "p\x00"}):
        response = await suite.http.post(f"{API}/categories", json=body, headers=headers)
        assert response.status_code == 400, response.text
    product = await create(suite, people["admin"], category)
    for response in (
        await suite.http.patch(f"{API}/products/{product['id']}", json={"name": "\x00"}, headers=headers),
        await suite.http.post(
            f"{API}/products/{product['id']}/reviews", json={"rating": 3, "title": "\x00"}, headers=headers
        ),
        await suite.http.post(
            f"{API}/products/{product['id']}/stock-adjustments", json={"delta": 1, "reason": "\x00"}, headers=headers
        ),
    ):
        assert response.status_code == 400, response.text
    assert row(suite, product["id"])[0][1] == product["name"]


async def test_lone_surrogates_in_json_are_400(suite, people, category):
    headers = {**people["admin"]["headers"], "Content-Type": "application/json"}
    before = product_count(suite)
    body = json.dumps(product_body(category, name="X")).replace('"name": "X"', '"name": "\\ud800"')
    response = await suite.http.post(f"{API}/products", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert "name" in error_of(response)["details"]["fields"]
    response = await suite.http.post(
        f"{API}/categories", content=b'{"slug": "sur-x", "name": "\\udfff"}', headers=headers
    )
    assert response.status_code == 400
    assert product_count(suite) == before
