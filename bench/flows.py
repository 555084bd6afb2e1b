"""The asyncio httpx client that makes the data the scenarios need (never measured): the seeded
product ids, stock raised through the admin API so no flow runs out, guest carts of three lines
(one per wrk connection) and registered buyers with a filled cart. wrk drives every measured
window (bench/wrk.py), checkout included (`CHECKOUT_BODY`, one buyer per order).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import httpx

STOCK_RAISE = 1_000_000
PASSWORD = "Passw0rd!x"
ADDRESS = {
    "firstName": "Bench",
    "lastName": "User",
    "line1": "1 Main St",
    "city": "Springfield",
    "postalCode": "12345",
    "country": "US",
}
CHECKOUT_BODY = {"shippingAddress": ADDRESS, "payment": {"method": "card", "token": "tok_visa"}}
PREPARE_CONCURRENCY = 8


def client(base_url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits)


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
        )
    return response


async def gather_limited(jobs: list[Awaitable], limit: int = PREPARE_CONCURRENCY) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Awaitable):
        async with semaphore:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


# -- preparation ----------------------------------------------------------------------------------


async def product_ids(http: httpx.AsyncClient) -> list[str]:
    ids, token = [], ""
    while True:
        body = expect(await http.get("/api/v1/products", params={"pageSize": 100, "pageToken": token}), 200).json()
        ids += [product["id"] for product in body["data"]]
        token = body["page"]["nextPageToken"]
        if not token:
            return ids


async def raise_stock(http: httpx.AsyncClient, admin_email: str, admin_password: str, ids: list[str]) -> None:
    login = expect(await http.post("/api/v1/auth/login", json={"email": admin_email, "password": admin_password}), 200)
    headers = {"Authorization": f"Bearer {login.json()['data']['tokens']['accessToken']}"}
    responses = await gather_limited(
        [
            http.post(
                f"/api/v1/products/{pid}/stock-adjustments",
                headers=headers,
                json={"delta": STOCK_RAISE, "reason": "bench: stock for the load"},
            )
            for pid in ids
        ]
    )
    for response in responses:
        expect(response, 200)


async def add(http: httpx.AsyncClient, headers: dict[str, str], product_id: str) -> httpx.Response:
    return await http.post("/api/v1/cart/items", headers=headers, json={"productId": product_id, "quantity": 1})


async def guest_cart(http: httpx.AsyncClient, ids: list[str], first: int, lines: int) -> str:
    session = str(uuid.uuid4())
    for line in range(lines):
        expect(await add(http, {"X-Session-ID": session}, ids[(first + line) % len(ids)]), 200, 201)
    return session


async def guest_carts(http: httpx.AsyncClient, ids: list[str], count: int, lines: int = 3) -> list[str]:
    return await gather_limited([guest_cart(http, ids, index * lines, lines) for index in range(count)])


async def buyer(http: httpx.AsyncClient, product_id: str) -> str:
    body = {
        "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "firstName": "Bench",
        "lastName": "Buyer",
    }
    token = expect(await http.post("/api/v1/auth/register", json=body), 201).json()["data"]["tokens"]["accessToken"]
    expect(await add(http, {"Authorization": f"Bearer {token}"}, product_id), 200, 201)
    return token


async def buyers(http: httpx.AsyncClient, products: list[str]) -> list[str]:
    """One registered buyer per entry of `products`, with that product in the cart."""
    return await gather_limited([buyer(http, product_id) for product_id in products])
