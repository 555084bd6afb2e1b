"""Product listing through the gateway: every filter, every sort, search, and keyset pagination
that returns each matching product exactly once across pages (with ties on every sort key)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime

import pytest
import pytest_asyncio

API = "/api/v1"
SORTS = ["newest", "price", "-price", "rating", "name"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(suite):
    """An isolated little catalog: parent + child category, a unique search word, ties on every key."""
    admin = await suite.admin()
    headers = admin["headers"]
    tag = uuid.uuid4().hex[:8]
    word = f"zork{tag}"  # a word no other test uses
    parent, child, other = f"lp-{tag}", f"lc-{tag}", f"lo-{tag}"
    for slug, name, parent_slug in (
        (parent, f"Outdoor {tag}", None),
        (child, f"Bivouacs {tag}", parent),
        (other, f"Kitchen {tag}", None),
    ):
        body = {"slug": slug, "name": name, **({"parentSlug": parent_slug} if parent_slug else {})}
        assert (await suite.http.post(f"{API}/categories", json=body, headers=headers)).status_code == 201

    specs = []
    for i in range(14):
        specs.append(
            {
                "name": ["Alpine Tent", "alpine tent", "Basecamp Stove", "Canyon Lamp"][i % 4]
                + f" {word if i % 3 == 0 else ''}",
                "description": f"Item {i}. " + (f"Mentions {word} in passing." if i % 3 == 1 else "Plain."),
                "priceCents": [1500, 2500, 2500, 9900][i % 4],
                "categorySlug": [parent, child][i % 2],
                "brand": ["Summit", "summit", "Ember"][i % 3],
                "stock": [0, 3, 7][i % 3],
            }
        )
    specs.append(
        {
            "name": "Kettle",
            "description": "For tea.",
            "priceCents": 4000,
            "categorySlug": other,
            "brand": "Ember",
            "stock": 5,
        }
    )

    async def make(spec, status="ACTIVE"):
        body = {"sku": f"L-{uuid.uuid4().hex[:12]}", "currency": "USD", "images": [], "status": status, **spec}
        response = await suite.http.post(f"{API}/products", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    # created concurrently so creation times are close together (ties broken by id)
    products = list(await asyncio.gather(*(make(spec) for spec in specs)))
    draft = await make({**specs[0], "name": f"Draft {word}"}, status="DRAFT")
    archived = await make({**specs[0], "name": f"Archived {word}"})
    assert (await suite.http.delete(f"{API}/products/{archived['id']}", headers=headers)).status_code == 204
    # ratings with ties
    users = await asyncio.gather(*(suite.register() for _ in range(3)))
    for product, ratings in zip(products[:6], ([5], [5], [3, 4], [1], [4, 2], [3]), strict=True):
        for user, rating in zip(users, ratings, strict=False):
            response = await suite.http.post(
                f"{API}/products/{product['id']}/reviews", json={"rating": rating}, headers=user["headers"]
            )
            assert response.status_code == 201
    fresh = {}
    for product in products:
        fresh[product["id"]] = (await suite.http.get(f"{API}/products/{product['id']}")).json()["data"]
    return {
        "products": list(fresh.values()),
        "parent": parent,
        "child": child,
        "other": other,
        "word": word,
        "draft": draft,
        "archived": archived,
        "headers": headers,
    }


async def walk(suite, params, page_size=4):
    items, token, pages = [], None, 0
    while True:
        query = {**params, "pageSize": page_size, **({"pageToken": token} if token else {})}
        response = await suite.http.get(f"{API}/products", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= page_size
        items += body["data"]
        total = body["page"]["totalSize"]
        token = body["page"]["nextPageToken"]
        pages += 1
        assert pages < 100
        if token is None:
            return items, total


def in_world(world, *slugs):
    return [p for p in world["products"] if p["categorySlug"] in slugs]


def sort_key(sort):
    return {
        "newest": lambda p: (datetime.fromisoformat(p["createdAt"]), p["id"]),
        "price": lambda p: (p["priceCents"], p["id"]),
        "-price": lambda p: (p["priceCents"], p["id"]),
        "rating": lambda p: (p["rating"]["average"], p["id"]),
        "name": lambda p: (p["name"].lower(), p["id"]),
    }[sort]


@pytest.mark.parametrize("sort", SORTS)
async def test_every_sort_walks_every_product_exactly_once_in_order(suite, world, sort):
    expected = in_world(world, world["parent"], world["child"])
    items, total = await walk(suite, {"category": world["parent"], "sort": sort}, page_size=3)
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids)) == total == len(expected)
    assert set(ids) == {p["id"] for p in expected}
    keys = [sort_key(sort)(p) for p in items]
    descending = sort in ("newest", "-price", "rating")
    assert keys == sorted(keys, reverse=descending)


async def test_default_sort_is_newest_and_relevance_with_q(suite, world):
    items, _ = await walk(suite, {"category": world["parent"]})
    explicit, _ = await walk(suite, {"category": world["parent"], "sort": "newest"})
    assert [p["id"] for p in items] == [p["id"] for p in explicit]
    by_default, _ = await walk(suite, {"q": world["word"]}, page_size=2)
    by_relevance, _ = await walk(suite, {"q": world["word"], "sort": "relevance"}, page_size=2)
    assert [p["id"] for p in by_default] == [p["id"] for p in by_relevance]


@pytest.mark.parametrize("sort", [None, *SORTS])
async def test_search_walks_every_match_exactly_once(suite, world, sort):
    word = world["word"]
    expected = {p["id"] for p in world["products"] if word in p["name"] or word in p["description"]}
    assert len(expected) >= 8
    params = {"q": word.upper(), **({"sort": sort} if sort else {})}
    items, total = await walk(suite, params, page_size=3)
    ids = [p["id"] for p in items]
    assert len(ids) == len(set(ids)) == total == len(expected)
    assert set(ids) == expected
    assert world["draft"]["id"] not in ids and world["archived"]["id"] not in ids
    if sort is None:
        # relevance: a match in the name outranks a match only in the description
        names = [word in p["name"] for p in items]
        assert names == sorted(names, reverse=True)


async def test_search_matches_brand_and_category_words_case_insensitively(suite, world):
    tag = world["word"][4:]
    items, total = await walk(suite, {"q": f"KITCHEN {tag}"})
    assert {p["categorySlug"] for p in items} == {world["other"]} and total == 1
    items, _ = await walk(suite, {"q": f"bivouac {tag}"})  # the child category's name
    assert {p["id"] for p in items} == {p["id"] for p in in_world(world, world["child"])}
    items, _ = await walk(suite, {"q": f"{world['word']} SUMMIT"})  # all words must match
    assert items and all(p["brand"].lower() == "summit" for p in items)
    assert not (await walk(suite, {"q": f"{world['word']} ember"}))[0]
    # SQL-looking input is just words
    response = await suite.http.get(f"{API}/products", params={"q": "'; DROP TABLE products; --"})
    assert response.status_code == 200
    assert suite.sql("catalog", "SELECT count(*) FROM products")[0][0] > 0


async def test_filters(suite, world):
    everything = in_world(world, world["parent"], world["child"])

    async def ids(**params):
        items, total = await walk(suite, params, page_size=100)
        assert total == len(items)
        return {p["id"] for p in items}

    assert await ids(category=world["parent"]) == {p["id"] for p in everything}
    assert await ids(category=world["child"]) == {p["id"] for p in in_world(world, world["child"])}
    assert await ids(category=world["parent"], brand="SUMMIT") == {
        p["id"] for p in everything if p["brand"].lower() == "summit"
    }
    assert await ids(category=world["parent"], minPriceCents=2500, maxPriceCents=2500) == {
        p["id"] for p in everything if p["priceCents"] == 2500
    }
    assert await ids(category=world["parent"], minPriceCents=3000) == {
        p["id"] for p in everything if p["priceCents"] >= 3000
    }
    assert await ids(category=world["parent"], inStock="true") == {p["id"] for p in everything if p["stock"] > 0}
    assert await ids(category=world["parent"], inStock="false") == {p["id"] for p in everything}
    assert await ids(category=world["parent"], brand="summit", inStock="true", maxPriceCents=2500, q=world["word"]) == {
        p["id"]
        for p in everything
        if p["brand"].lower() == "summit"
        and p["stock"] > 0
        and p["priceCents"] <= 2500
        and (world["word"] in p["name"] or world["word"] in p["description"])
    }
    assert await ids(category="no-such-category") == set()


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": 0},
        {"pageSize": 101},
        {"pageSize": "ten"},
        {"sort": "cheapest"},
        {"minPriceCents": -1},
        {"maxPriceCents": "x"},
        {"minPriceCents": 500, "maxPriceCents": 100},
        {"inStock": "perhaps"},
        {"minPriceCents": 10**30},
        {"q": "x" * 201},
    ],
)
async def test_bad_list_parameters_are_400(suite, params):
    response = await suite.http.get(f"{API}/products", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_forged_stale_and_foreign_page_tokens_are_400(suite, world):
    response = await suite.http.get(f"{API}/products", params={"category": world["parent"], "pageSize": 2})
    token = response.json()["page"]["nextPageToken"]
    assert token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    payload, _, signature = raw.rpartition(b".")
    data = json.loads(payload)
    data["p"]["id"] = "00000000-0000-0000-0000-000000000000"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode() + b"." + signature).decode().rstrip("=")
    cases = [
        {"category": world["parent"], "pageToken": "not-a-token"},
        {"category": world["parent"], "pageToken": forged},
        {"category": world["parent"], "pageToken": token[:-3] + "abc"},
        # a token of another query (other filter, other sort) is stale for this one
        {"category": world["child"], "pageToken": token},
        {"category": world["parent"], "sort": "price", "pageToken": token},
    ]
    for params in cases:
        response = await suite.http.get(f"{API}/products", params={**params, "pageSize": 2})
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "INVALID_PAGE_TOKEN"
    # the genuine token still works, and page size may change between pages
    response = await suite.http.get(
        f"{API}/products", params={"category": world["parent"], "pageSize": 5, "pageToken": token}
    )
    assert response.status_code == 200


async def test_list_shape(suite, world):
    response = await suite.http.get(f"{API}/products", params={"category": world["other"]})
    body = response.json()
    assert body["page"] == {"nextPageToken": None, "totalSize": 1}
    assert body["data"][0]["name"] == "Kettle" and body["data"][0]["rating"] == {"average": 0.0, "count": 0}
