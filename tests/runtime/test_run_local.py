"""`make run` end to end: SQLite under a fresh var dir, REPLICAS=2, readiness, demo data, the admin,
a clean stop on SIGTERM, and a second start that keeps the data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from bench.stack import free_base_port
from tests.harness import ROOT, free_port

pytestmark = pytest.mark.slow


def start(var_dir, http_port, base_port, replicas):
    env = {
        **os.environ,
        "SHOP_VAR_DIR": str(var_dir),
        "SHOP_HTTP_PORT": str(http_port),
        # Probed free too: the default (the HTTP port + 1000) was once some other process's
        # ephemeral port, and the gateway failed to bind its metrics server.
        "SHOP_GATEWAY_METRICS_PORT": str(free_port()),
        "SHOP_LOCAL_BASE_PORT": str(base_port),
        "SHOP_ADMIN_PASSWORD": "Admin-Passw0rd-for-tests",
    }
    log = open(var_dir.parent / f"run-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.run_local", "--replicas", str(replicas)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def wait_for_ready(process, base_url, log, timeout=180):
    """Until the runner itself says it is up (it prints after its own /readyz check) and /readyz is 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, open(log.name).read()[-4000:]
        if "The shop is running." in open(log.name).read():
            assert httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
            return
        time.sleep(0.5)
    raise AssertionError("make run never became ready:\n" + open(log.name).read()[-4000:])


def stop(process, log):
    process.send_signal(signal.SIGTERM)
    code = process.wait(60)
    log.close()
    return code


def checkout_on_sqlite(base_url, access_token, product_id):
    """The checkout's lean SQL runs on SQLite too: a paid order, the cart empty with the 201, and
    the stock committed right after it."""
    headers = {"Authorization": f"Bearer {access_token}"}
    added = httpx.post(
        f"{base_url}/api/v1/cart/items", json={"productId": product_id, "quantity": 1}, headers=headers, timeout=10
    )
    assert added.status_code == 200, added.text
    body = {
        "shippingAddress": {
            "firstName": "Per",
            "lastName": "Sist",
            "line1": "1 Main Street",
            "city": "London",
            "postalCode": "N1 1AA",
            "country": "GB",
        },
        "payment": {"method": "card", "token": "tok_visa"},
    }
    order = httpx.post(
        f"{base_url}/api/v1/orders", json=body, timeout=30, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert order.status_code == 201, order.text
    assert order.json()["data"]["status"] == "PAID"
    assert httpx.get(f"{base_url}/api/v1/cart", headers=headers, timeout=10).json()["data"]["items"] == []
    declined = httpx.post(
        f"{base_url}/api/v1/orders",
        timeout=30,
        json={**body, "payment": {"method": "card", "token": "tok_chargeDeclined"}},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert declined.status_code == 409 and declined.json()["error"]["code"] == "CART_EMPTY", declined.text


def test_make_run_with_two_replicas_starts_serves_stops_and_persists(tmp_path):
    var_dir = tmp_path / "var"
    http_port = free_port()
    # Below the ephemeral range and probed free: a fixed guess in 40000-60000 collided with some
    # other process's ephemeral port now and then (a replica then failed to bind).
    base_port = free_base_port(replicas=2)
    base_url = f"http://127.0.0.1:{http_port}"

    process, log = start(var_dir, http_port, base_port, replicas=2)
    try:
        wait_for_ready(process, base_url, log)
        output = open(log.name).read()
        assert f"127.0.0.1:{base_port + 1}, 127.0.0.1:{base_port + 11}" in output  # catalog on both replicas
        products = httpx.get(f"{base_url}/api/v1/products", params={"pageSize": 100}, timeout=10).json()
        assert products["page"]["totalSize"] >= 20
        categories = httpx.get(f"{base_url}/api/v1/categories", timeout=10).json()["data"]
        assert len(categories) >= 4
        login = httpx.post(
            f"{base_url}/api/v1/auth/login",
            json={"email": "admin@example.com", "password": "Admin-Passw0rd-for-tests"},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        assert login.json()["data"]["user"]["role"] == "ADMIN"
        email = f"persist-{uuid.uuid4().hex[:8]}@example.com"
        register = httpx.post(
            f"{base_url}/api/v1/auth/register",
            timeout=30,
            json={"email": email, "password": "Passw0rd!x", "firstName": "Per", "lastName": "Sist"},
        )
        assert register.status_code == 201, register.text
        checkout_on_sqlite(base_url, register.json()["data"]["tokens"]["accessToken"], products["data"][0]["id"])
        time.sleep(1)  # the paid order's outbox (commit the stock, email) runs right after the 201
    finally:
        exit_code = stop(process, log)
    assert exit_code == 0
    output = open(log.name).read()
    assert "stopped." in output
    # The outbox ran its rows on SQLite without an error (its lean rows are the same kind as on
    # PostgreSQL: a Row without `_replace` once failed every row that taught the order something).
    orders_log = "".join(path.read_text() for path in sorted((var_dir / "log").glob("orders*.log")))
    assert "orders.outbox" in orders_log or "rpc" in orders_log  # the log is where the test looks
    assert "outbox.run_failed" not in orders_log and "outbox.failed" not in orders_log, orders_log[-4000:]

    process, log = start(var_dir, http_port, base_port, replicas=1)
    try:
        wait_for_ready(process, base_url, log)
        login = httpx.post(f"{base_url}/api/v1/auth/login", json={"email": email, "password": "Passw0rd!x"}, timeout=30)
        assert login.status_code == 200, login.text
        products = httpx.get(f"{base_url}/api/v1/products", params={"pageSize": 100}, timeout=10).json()
        assert products["page"]["totalSize"] >= 20  # seeding twice added nothing twice
        skus = [p["sku"] for p in products["data"]]
        assert len(skus) == len(set(skus))
    finally:
        assert stop(process, log) == 0
