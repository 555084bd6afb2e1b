"""Replicas: round-robin spreads calls over both instances; killing one under a steady stream of
reads loses no request (retries on UNAVAILABLE); writes stay correct because they are idempotent."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import urllib.request
import uuid
from typing import Any

import grpc
import pytest

from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import make_channel
from tests.harness import free_port, identity_env, run_process, service_identity
from tests.runtime.test_graceful_shutdown import wait_serving


def rpc_count(metrics_port: int, method: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    pattern = re.compile(r'shop_rpc_requests_total\{[^}]*method="' + re.escape(method) + r'"[^}]*\} ([0-9.e+]+)')
    return sum(float(value) for value in pattern.findall(text))


@pytest.fixture
async def two_catalogs(suite, tmp_path):
    """Two catalog processes on one database, as `make run REPLICAS=2` starts them."""
    instances: list[dict[str, Any]] = []
    for index in range(2):
        grpc_port, metrics_port = free_port(), free_port()
        env = {
            "SHOP_ENV": "test",
            "SHOP_DATABASE_URL": suite.database_urls["catalog"],
            "SHOP_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "SHOP_METRICS_PORT": str(metrics_port),
            "SHOP_GRACE_SECONDS": "2",
            **{f"SHOP_{key.upper()}": str(value) for key, value in suite.common().items()},
            **identity_env("catalog"),
        }
        process = run_process([sys.executable, "-m", "services.catalog"], env, tmp_path / f"catalog-{index}.log")
        instances.append({"process": process, "address": f"127.0.0.1:{grpc_port}", "metrics": metrics_port})
    try:
        for instance in instances:
            await wait_serving(instance["address"])
        yield instances
    finally:
        for instance in instances:
            if instance["process"].poll() is None:
                instance["process"].kill()
            instance["process"].wait()


async def create_product(suite, stock: int) -> str:
    admin = await suite.admin()
    slug = f"replica-{uuid.uuid4().hex[:8]}"
    response = await suite.http.post(
        "/api/v1/categories", json={"slug": slug, "name": "Replica tests"}, headers=admin["headers"]
    )
    assert response.status_code == 201, response.text
    response = await suite.http.post(
        "/api/v1/products",
        json={
            "sku": f"SKU-{uuid.uuid4().hex[:10]}",
            "name": "Replicated lamp",
            "description": "A lamp.",
            "priceCents": 2500,
            "currency": "USD",
            "categorySlug": slug,
            "stock": stock,
        },
        headers=admin["headers"],
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def round_robin_stub(instances) -> tuple[grpc.aio.Channel, catalog_pb2_grpc.CatalogServiceAsyncStub]:
    target = ",".join(instance["address"] for instance in instances)
    channel = make_channel(target, "catalog", service_tokens=service_identity("orders"))
    return channel, catalog_pb2_grpc.CatalogServiceStub(channel)


async def test_calls_spread_across_both_instances(suite, two_catalogs):
    product_id = await create_product(suite, stock=5)
    channel, stub = round_robin_stub(two_catalogs)
    async with channel:
        for _ in range(40):
            await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
    counts = [rpc_count(instance["metrics"], "GetProduct") for instance in two_catalogs]
    assert sum(counts) == 40
    assert min(counts) >= 10, counts


async def test_killing_one_instance_loses_no_read_and_writes_stay_correct(suite, two_catalogs):
    # Enough that two writers never sell out in 4 s (a reserve takes about 2 ms on a quiet machine).
    stock = 100_000
    product_id = await create_product(suite, stock=stock)
    channel, stub = round_robin_stub(two_catalogs)
    failures: list[BaseException] = []
    reserved: dict[str, int] = {}
    reads = 0
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id), timeout=10)
                reads += 1
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)

    async def writer(worker: int) -> None:
        count = 0
        while not stop.is_set():
            reservation_id = str(uuid.uuid4())
            request = catalog_pb2.ReserveStockRequest(
                reservation_id=reservation_id,
                lines=[catalog_pb2.StockLine(product_id=product_id, quantity=1)],
            )
            try:
                await stub.ReserveStock(request, timeout=10)
                reserved[reservation_id] = 1
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)
            count += 1

    async with channel:
        tasks = [asyncio.create_task(reader()) for _ in range(4)] + [asyncio.create_task(writer(i)) for i in range(2)]
        await asyncio.sleep(1.5)
        two_catalogs[0]["process"].send_signal(signal.SIGKILL)
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.gather(*tasks)

        assert not failures, failures[:3]
        assert reads > 50
        # Every reservation happened exactly once, even those retried across the kill.
        product = (await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))).product
        assert product.stock == stock - len(reserved)
        for reservation_id in list(reserved)[:20]:
            again = await stub.ReserveStock(
                catalog_pb2.ReserveStockRequest(
                    reservation_id=reservation_id,
                    lines=[catalog_pb2.StockLine(product_id=product_id, quantity=1)],
                )
            )
            assert again.reservation.id == reservation_id
        product = (await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))).product
        assert product.stock == stock - len(reserved)
