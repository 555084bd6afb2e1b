"""`make bench`: start the whole shop as real processes and measure it over HTTP.

The stack runs as `make run` starts it (scripts/run_local.py), on PostgreSQL databases created for
the run when a server answers on 127.0.0.1:5432 (else SQLite), with rate limits off. Scenarios
run one after another with a fixed number of concurrent clients and print requests/s and latency
percentiles. Options: --concurrency, --seconds, --replicas, --checkouts, --sqlite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth", "catalog", "cart", "orders", "payments")
ADMIN_PASSWORD = "Bench-Admin-Passw0rd"
WORDS = ("coffee", "lamp", "shoes")


def create_databases() -> tuple[dict[str, str], Callable[[], None]] | None:
    try:
        import psycopg
        from psycopg import sql

        admin_url = os.environ.get("SHOP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        with psycopg.connect(admin_url, connect_timeout=3):
            pass
    except Exception:
        return None
    names = {service: f"shop_bench_{service}_{uuid.uuid4().hex[:8]}" for service in SERVICES}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    base = admin_url.rsplit("/", 1)[0]
    return {service: f"{base}/{name}" for service, name in names.items()}, drop


def start_stack(var_dir: Path, http_port: int, replicas: int, urls: dict[str, str] | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "SHOP_VAR_DIR": str(var_dir),
        "SHOP_HTTP_PORT": str(http_port),
        "SHOP_LOCAL_BASE_PORT": "45051",
        "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHOP_RATE_LIMIT_PER_MINUTE": "0",
        "SHOP_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        "SHOP_LOG_LEVEL": "WARNING",
    }
    for service, url in (urls or {}).items():
        env[f"SHOP_{service.upper()}_DATABASE_URL"] = url
    return subprocess.Popen([sys.executable, "-m", "scripts.run_local", "--replicas", str(replicas)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit("the stack exited during start")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the stack never became ready")


class Result:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.errors = 0
        self.elapsed = 0.0

    def row(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.name:<34} no successful requests, {self.errors} errors"

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

        rate = len(lat) / self.elapsed if self.elapsed else 0
        return (f"{self.name:<34} {len(lat):>7} {self.errors:>6} {rate:>9.1f} "
                f"{statistics.median(lat) * 1000:>8.1f} {pct(0.95):>8.1f} {pct(0.99):>8.1f}")


async def run_for(name: str, seconds: float, concurrency: int,
                  request: Callable[[int], Awaitable[httpx.Response]], ok: tuple[int, ...] = (200,)) -> Result:
    result = Result(name)
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = await request(index * 1_000_000 + i)
                good = response.status_code in ok
            except httpx.HTTPError:
                good = False
            if good:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.elapsed = time.monotonic() - started
    return result


async def bench(args: argparse.Namespace, base_url: str) -> list[Result]:
    limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        products = (await client.get("/api/v1/products", params={"pageSize": 100})).json()["data"]
        ids = [p["id"] for p in products]
        results = []
        results.append(await run_for("GET /products (page of 20)", args.seconds, args.concurrency,
                                     lambda i: client.get("/api/v1/products")))
        results.append(await run_for("GET /products/{id}", args.seconds, args.concurrency,
                                     lambda i: client.get(f"/api/v1/products/{ids[i % len(ids)]}")))
        results.append(await run_for("GET /products?q=… (search)", args.seconds, args.concurrency,
                                     lambda i: client.get("/api/v1/products", params={"q": WORDS[i % len(WORDS)]})))
        sessions = [str(uuid.uuid4()) for _ in range(args.concurrency)]

        def guest(i: int) -> dict[str, str]:  # one guest cart per worker
            return {"X-Session-ID": sessions[i // 1_000_000]}

        async def add_to_cart(i: int) -> httpx.Response:
            return await client.post("/api/v1/cart/items", json={"productId": ids[i % len(ids)], "quantity": 1},
                                     headers=guest(i))

        results.append(await run_for("POST /cart/items (guest)", args.seconds, args.concurrency, add_to_cart,
                                     ok=(200, 201, 409)))
        results.append(await run_for("GET /cart (guest, priced)", args.seconds, args.concurrency,
                                     lambda i: client.get("/api/v1/cart", headers=guest(i))))

        # Checkout: users registered beforehand (bcrypt cost 12 is deliberately slow, not measured here).
        users = []
        for start in range(0, args.checkouts, 10):
            batch = await asyncio.gather(*(client.post("/api/v1/auth/register", json={
                "email": f"bench-{uuid.uuid4().hex[:10]}@example.com", "password": "Passw0rd!x",
                "firstName": "Bench", "lastName": "User"}) for _ in range(min(10, args.checkouts - start))))
            users += [r.json()["data"]["tokens"]["accessToken"] for r in batch if r.status_code == 201]
        in_stock = [p["id"] for p in products if p["stock"] >= 50] or ids
        for index, token in enumerate(users):
            await client.post("/api/v1/cart/items", json={"productId": in_stock[index % len(in_stock)], "quantity": 1},
                              headers={"Authorization": f"Bearer {token}"})
        checkout = Result("POST /orders (checkout saga)")
        address = {"firstName": "Bench", "lastName": "User", "line1": "1 Main St", "city": "Springfield",
                   "postalCode": "12345", "country": "US"}

        async def one(token: str) -> None:
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
            body = {"shippingAddress": address, "payment": {"method": "card", "token": "tok_visa"}}
            response = await client.post("/api/v1/orders", headers=headers, json=body)
            if response.status_code == 201:
                checkout.latencies.append(time.perf_counter() - started)
            else:
                checkout.errors += 1

        started = time.monotonic()
        semaphore = asyncio.Semaphore(args.concurrency)

        async def limited(token: str) -> None:
            async with semaphore:
                await one(token)

        await asyncio.gather(*(limited(token) for token in users))
        checkout.elapsed = time.monotonic() - started
        results.append(checkout)
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--checkouts", type=int, default=60)
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL answers")
    args = parser.parse_args()

    created = None if args.sqlite else create_databases()
    urls, drop = created if created else (None, lambda: None)
    http_port = 18000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
        process = start_stack(Path(tmp) / "var", http_port, args.replicas, urls)
        try:
            base_url = f"http://127.0.0.1:{http_port}"

            async def go() -> list[Result]:
                async with httpx.AsyncClient(base_url=base_url, timeout=5) as probe:
                    await wait_ready(probe, process)
                return await bench(args, base_url)

            results = asyncio.run(go())
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            drop()
    database = "PostgreSQL" if urls else "SQLite"
    print(f"\nthe shop: {database}, {args.replicas} replica(s) per service, {args.concurrency} concurrent clients, "
          f"{args.seconds:.0f} s per scenario, {os.cpu_count()} CPU cores, all on 127.0.0.1")
    print(f"{'scenario':<34} {'ok':>7} {'errors':>6} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for result in results:
        print(result.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
