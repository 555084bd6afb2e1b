"""The asyncio httpx client: the data the scenarios need, and the stateful flows wrk cannot drive.

Preparation (never measured): the seeded product ids, stock raised through the admin API so no
flow runs out, guest carts of three lines (one per wrk connection) and registered buyers with a
filled cart. Flow: checkout (a fixed set of buyers, `connections` at a time; cart add runs on wrk,
see bench/wrk.py). The load generator's CPU here is this process's own.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable

import httpx

from bench import procfs
from bench.wrk import Measurement

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


# -- measuring ------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


class Recorder:
    """Latencies and errors of one window, with this process's CPU over it."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.error_kinds: Counter[str] = Counter()
        self.started = time.monotonic()
        self.cpu_started = procfs.cpu_seconds(os.getpid()) or 0.0

    async def time(self, request: Awaitable[httpx.Response], ok: tuple[str, ...]) -> None:
        """Times one request; a status outside `ok` or a transport error is counted by kind."""
        started = time.perf_counter()
        try:
            response = await request
            status, detail = str(response.status_code), response.text[:200]
        except httpx.HTTPError as exc:
            status, detail = type(exc).__name__, str(exc)[:200]
        if status in ok:
            self.latencies.append(time.perf_counter() - started)
            return
        if not self.error_kinds:
            print(f"    first error: {status} {detail}", flush=True)
        self.error_kinds[status] += 1

    def measurement(self) -> Measurement:
        seconds = time.monotonic() - self.started
        cpu = (procfs.cpu_seconds(os.getpid()) or 0.0) - self.cpu_started
        lat = sorted(self.latencies)
        return Measurement(
            ok=len(lat),
            errors=sum(self.error_kinds.values()),
            seconds=seconds,
            p50_ms=percentile(lat, 0.50) * 1000,
            p95_ms=percentile(lat, 0.95) * 1000,
            p99_ms=percentile(lat, 0.99) * 1000,
            loadgen_cpu=cpu,
            error_kinds=dict(self.error_kinds),
        )


async def checkout(http: httpx.AsyncClient, tokens: list[str], concurrency: int) -> Measurement:
    """Every buyer checks out once, `concurrency` at a time; 201 is success."""
    recorder = Recorder()
    body = {"shippingAddress": ADDRESS, "payment": {"method": "card", "token": "tok_visa"}}

    def place(token: str) -> Awaitable[None]:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        return recorder.time(http.post("/api/v1/orders", headers=headers, json=body), ("201",))

    await gather_limited([place(token) for token in tokens], concurrency)
    return recorder.measurement()
