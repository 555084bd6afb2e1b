"""The gateway's read cache of public product pages (gateway/cache.py), on a second gateway with
the cache on beside the suite's own (cache off): hits, the staleness bound, invalidation by
writes through the cached gateway, and what it must never serve (signed-in callers, drafts)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from gateway.cache import CACHE_REQUESTS

API = "/api/v1"
TTL = 0.6


def lookups(result: str) -> float:
    return CACHE_REQUESTS.labels("product", result)._value.get()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(suite):
    return await suite.admin()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def category(suite, admin):
    slug = f"cache-{uuid.uuid4().hex[:8]}"
    response = await suite.http.post(
        f"{API}/categories", json={"slug": slug, "name": "Cache tests"}, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    return slug


async def new_product(suite, admin, category, **overrides):
    body = {
        "sku": f"C-{uuid.uuid4().hex[:10]}",
        "name": "Cached lamp",
        "priceCents": 4200,
        "currency": "USD",
        "categorySlug": category,
        "stock": 5,
        **overrides,
    }
    response = await suite.http.post(f"{API}/products", json=body, headers=admin["headers"])
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_a_second_public_read_is_a_hit_with_the_same_answer(suite, admin, category):
    product = await new_product(suite, admin, category)
    async with suite.extra_gateway(product_cache_ttl_seconds=TTL) as cached:
        hits, misses = lookups("hit"), lookups("miss")
        first = await cached.get(f"{API}/products/{product['id']}")
        second = await cached.get(f"{API}/products/{product['id'].upper()}")
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        assert first.headers["content-type"] == second.headers["content-type"] == "application/json"
        assert "x-request-id" in second.headers
        assert (lookups("miss") - misses, lookups("hit") - hits) == (1, 1)


async def test_a_write_elsewhere_shows_within_the_ttl(suite, admin, category):
    product = await new_product(suite, admin, category)
    path = f"{API}/products/{product['id']}"
    async with suite.extra_gateway(product_cache_ttl_seconds=TTL) as cached:
        assert (await cached.get(path)).json()["data"]["priceCents"] == 4200
        # Through the suite's gateway: this gateway cannot know, and keeps its entry until the TTL.
        changed = await suite.http.patch(path, json={"priceCents": 5100}, headers=admin["headers"])
        assert changed.status_code == 200, changed.text
        assert (await cached.get(path)).json()["data"]["priceCents"] == 4200
        await asyncio.sleep(TTL + 0.2)
        assert (await cached.get(path)).json()["data"]["priceCents"] == 5100


async def test_writes_through_the_cached_gateway_are_read_at_once(suite, admin, category):
    product = await new_product(suite, admin, category)
    path = f"{API}/products/{product['id']}"
    async with suite.extra_gateway(product_cache_ttl_seconds=60) as cached:
        assert (await cached.get(path)).json()["data"]["name"] == "Cached lamp"
        assert (await cached.patch(path, json={"name": "Renamed lamp"}, headers=admin["headers"])).status_code == 200
        assert (await cached.get(path)).json()["data"]["name"] == "Renamed lamp"

        adjusted = await cached.post(
            f"{path}/stock-adjustments",
            json={"delta": 3, "reason": "recount"},
            headers={**admin["headers"], "Idempotency-Key": str(uuid.uuid4())},
        )
        assert adjusted.status_code == 200, adjusted.text
        assert (await cached.get(path)).json()["data"]["stock"] == 8

        customer = await suite.register()
        review = await cached.post(
            f"{path}/reviews", json={"rating": 4, "title": "ok", "body": "fine"}, headers=customer["headers"]
        )
        assert review.status_code == 201, review.text
        assert (await cached.get(path)).json()["data"]["rating"] == {"average": 4.0, "count": 1}

        assert (await cached.delete(path, headers=admin["headers"])).status_code == 204
        gone = await cached.get(path)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "PRODUCT_NOT_FOUND"


async def test_signed_in_callers_and_drafts_never_use_the_cache(suite, admin, category):
    draft = await new_product(suite, admin, category, status="DRAFT")
    path = f"{API}/products/{draft['id']}"
    async with suite.extra_gateway(product_cache_ttl_seconds=60) as cached:
        hits, misses = lookups("hit"), lookups("miss")
        for _ in range(2):
            seen = await cached.get(path, headers=admin["headers"])
            assert seen.status_code == 200 and seen.json()["data"]["status"] == "DRAFT"
        assert (lookups("hit"), lookups("miss")) == (hits, misses)  # not even looked up
        for _ in range(2):
            assert (await cached.get(path)).status_code == 404  # a draft is never stored for the public
        assert lookups("hit") == hits


@pytest.mark.parametrize("ttl", [0])
async def test_a_zero_ttl_turns_the_cache_off(suite, admin, category, ttl):
    product = await new_product(suite, admin, category)
    async with suite.extra_gateway(product_cache_ttl_seconds=ttl) as uncached:
        hits, misses = lookups("hit"), lookups("miss")
        for _ in range(3):
            assert (await uncached.get(f"{API}/products/{product['id']}")).status_code == 200
        assert (lookups("hit"), lookups("miss")) == (hits, misses)


def test_a_full_cache_drops_expired_entries_first_then_the_oldest():
    from gateway.cache import TTLCache

    cache = TTLCache("unit", ttl=60, max_entries=2)
    cache.put("a", b"1")
    cache.put("b", b"2")
    cache.put("c", b"3")  # full of live entries: the oldest ("a") goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, b"2", b"3")
    cache.put("b", b"2'")  # replacing a key evicts nothing
    assert (cache.get("b"), cache.get("c")) == (b"2'", b"3")
    cache.drop("c")
    assert cache.get("c") is None
