"""CPU per checkout-side catalog call: N x (ReserveStock of 3 lines + CommitReservation) against a
real catalog server process on a fresh PostgreSQL database (or SQLite with --sqlite), called one
after another by an "orders" service identity. Reports the catalog process's CPU (utime + stime
from /proc/<pid>/stat) per pair and per call, and the wall time per pair.

    .venv/bin/python -m bench.reservations [--calls 2000] [--sqlite] [--user-id]

`--user-id` sends CommitReservation.user_id (the new API) instead of a separate RecordPurchases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shop.catalog.v1 import catalog_pb2 as R
from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from shop.lib.tokens import generate_private_key_pem, public_keys_json

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("SHOP_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYS = {name: generate_private_key_pem() for name in ("catalog", "orders")}
PUBLIC_KEYS = public_keys_json(KEYS)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000, help="reserve+commit pairs measured")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--user-id", action="store_true", help="commit with user_id (new API)")
    parser.add_argument("--record-purchases", action="store_true", help="also call RecordPurchases (old flow)")
    args = parser.parse_args()

    database = f"shop_bench_catalog_{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    if args.sqlite:
        url = f"sqlite:///{tmp}/catalog.db"
    else:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    port = free_port()
    env = {
        **os.environ,
        "SHOP_ENV": "test",
        "SHOP_DATABASE_URL": url,
        "SHOP_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "SHOP_SERVICE_KEY": KEYS["catalog"],
        "SHOP_SERVICE_PUBLIC_KEYS": PUBLIC_KEYS,
        "SHOP_PAGE_TOKEN_SECRET": "bench-page-token-secret-0123456789abcdef",
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_AUTH_TARGET": f"127.0.0.1:{free_port()}",
    }
    log = open(tmp / "catalog.log", "wb")  # noqa: SIM115, ASYNC230
    command = [sys.executable, "-m", "services.catalog"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    clients = ServiceClients(
        BaseShopSettings(
            env="test", service_key=KEYS["orders"], service_public_keys=PUBLIC_KEYS, catalog_target=f"127.0.0.1:{port}"
        ),
        "orders",
    )
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        await channel.close()
        category, products = f"bench-{uuid.uuid4().hex[:6]}", [str(uuid.uuid4()) for _ in range(3)]
        if args.sqlite:
            import sqlite3

            conn = sqlite3.connect(f"{tmp}/catalog.db")
            ph = "?"
        else:
            conn = psycopg.connect(url, autocommit=True)
            ph = "%s"
        conn.execute(
            f"INSERT INTO categories (slug, name, created_at) VALUES ({ph}, 'Bench', CURRENT_TIMESTAMP)",  # noqa: S608
            (category,),
        )
        insert_product = (
            "INSERT INTO products (id, sku, name, description, price_cents, currency, category_slug, images, "
            "stock, status, rating_average, rating_count, search_text, created_at, updated_at) VALUES "
            "(?, ?, ?, '', 1000, 'USD', ?, '[]', 100000000, 'ACTIVE', 0, 0, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ).replace("?", ph)
        for index, product in enumerate(products):
            conn.execute(
                insert_product,
                (product, f"B-{product[:8]}", f"Bench product {index}", category),
            )
        if args.sqlite:
            conn.commit()
        conn.close()
        user = str(uuid.uuid4())
        lines = [R.StockLine(product_id=p, quantity=1) for p in products]

        async def pair() -> None:
            rid = str(uuid.uuid4())
            await clients.catalog.ReserveStock(R.ReserveStockRequest(reservation_id=rid, lines=lines))
            commit = R.CommitReservationRequest(reservation_id=rid)
            if args.user_id:
                commit.user_id = user
            await clients.catalog.CommitReservation(commit)
            if args.record_purchases:
                await clients.catalog.RecordPurchases(
                    R.RecordPurchasesRequest(order_id=rid, user_id=user, product_ids=products)
                )

        for _ in range(args.warmup):
            await pair()
        cpu0, wall0 = cpu_seconds(server.pid), time.perf_counter()
        for _ in range(args.calls):
            await pair()
        cpu1, wall1 = cpu_seconds(server.pid), time.perf_counter()
        calls = 2 + (1 if args.record_purchases else 0)
        per_pair = (cpu1 - cpu0) / args.calls * 1000
        print(
            f"{'sqlite' if args.sqlite else 'postgresql'} pairs={args.calls} user_id={args.user_id} "
            f"record_purchases={args.record_purchases}: catalog CPU {per_pair:.3f} ms per pair "
            f"({per_pair / calls:.3f} ms per call), wall {(wall1 - wall0) / args.calls * 1000:.3f} ms per pair"
        )
    finally:
        await clients.close()
        server.terminate()
        server.wait(timeout=20)
        log.close()
        if not args.sqlite:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
