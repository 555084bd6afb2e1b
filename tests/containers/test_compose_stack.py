"""The real images on the real docker-compose.yml, checked through the published gateway.

One stack for the module (tests/containers/conftest.py: built from the committed Dockerfile,
`docker compose up -d --wait`, catalog scaled to 2), the tests in the order they stand here: the
ones that stop or recreate containers come last. Every HTTP request goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.ratelimit import RETRY_REDIS_SECONDS
from tests.containers.conftest import ADMIN_EMAIL, CATALOG_REPLICAS, TARGETS, Stack, admin_password, timed

pytestmark = pytest.mark.timeout(1500)

ADDRESS = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "line1": "1 Main Street",
    "city": "London",
    "postalCode": "N1 1AA",
    "country": "GB",
}
PASSWORD = "Passw0rd!x"
RETRYABLE = {502, 503, 504}
STOCK = 1000
DEMO_SKU, DEMO_NAME = "AUD-NC700", "Aurora NC700"  # one product of the demo catalog (services/catalog/seed.py)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return bearer(response.json()["data"]["tokens"]["accessToken"])


def register(http: httpx.Client, label: str) -> tuple[str, dict[str, str]]:
    email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
    response = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "firstName": "Container", "lastName": label.title()},
    )
    assert response.status_code == 201, response.text
    return email, bearer(response.json()["data"]["tokens"]["accessToken"])


def create_product(http: httpx.Client, admin: dict, *, stock: int, price: int = 2500, label: str = "ctest") -> dict:
    response = http.post("/api/v1/categories", json={"slug": "containers", "name": "Containers"}, headers=admin)
    assert response.status_code in (201, 409), response.text
    sku = f"{label.upper()}-{uuid.uuid4().hex[:8].upper()}"
    response = http.post(
        "/api/v1/products",
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "sku": sku,
            "name": f"Container test product {sku}",
            "description": "Made by tests/containers.",
            "priceCents": price,
            "currency": "USD",
            "categorySlug": "containers",
            "stock": stock,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def stock_of(http: httpx.Client, admin: dict, product_id: str) -> int:
    response = http.get(f"/api/v1/products/{product_id}", headers=admin)  # signed in: never the read cache
    assert response.status_code == 200, response.text
    return response.json()["data"]["stock"]


def checkout(http: httpx.Client, user: dict, *, key: str | None = None, token: str = "tok_visa") -> httpx.Response:
    return http.post(
        "/api/v1/orders",
        headers={**user, "Idempotency-Key": key or str(uuid.uuid4())},
        json={"shippingAddress": ADDRESS, "payment": {"method": "card", "token": token}},
    )


@pytest.fixture(scope="module")
def admin(stack: Stack) -> dict[str, str]:
    return login(stack.http, ADMIN_EMAIL, admin_password())


@pytest.fixture(scope="module")
def kept() -> dict:
    """What earlier tests made that later ones look for again (after restarts, down/up)."""
    return {}


def test_full_journey_register_browse_cart_checkout_events_refund(stack: Stack, admin, kept):
    http = stack.http
    # Without SHOP_SEED_DEMO_DATA the shop starts empty (the demo catalog is opt-in).
    assert http.get("/api/v1/products", params={"q": DEMO_NAME}).json()["data"] == []
    product = create_product(http, admin, stock=10, price=4200, label="journey")
    email, user = register(http, "journey")

    # Browse: search, then the product page (anonymous, as a visitor would).
    found = http.get("/api/v1/products", params={"q": product["sku"]})
    assert found.status_code == 200, found.text
    assert [p["id"] for p in found.json()["data"]] == [product["id"]]
    page = http.get(f"/api/v1/products/{product['id']}")
    assert page.status_code == 200 and page.json()["data"]["priceCents"] == 4200

    response = http.post("/api/v1/cart/items", headers=user, json={"productId": product["id"], "quantity": 2})
    assert response.status_code == 200, response.text
    cart = http.get("/api/v1/cart", headers=user).json()["data"]
    assert [(line["productId"], line["quantity"]) for line in cart["items"]] == [(product["id"], 2)]

    response = checkout(http, user)
    assert response.status_code == 201, response.text
    order = response.json()["data"]
    assert order["status"] == "PAID" and order["totalCents"] >= 8400
    assert http.get("/api/v1/cart", headers=user).json()["data"]["items"] == []
    assert stock_of(http, admin, product["id"]) == 8

    # The order's events over SSE: the current status first, then the refund's change; the
    # stream ends by itself at the final status.
    events: list[dict] = []
    first = threading.Event()

    def watch() -> None:
        with (
            httpx.Client(base_url=stack.base_url, timeout=httpx.Timeout(30, read=60)) as client,
            client.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user) as stream,
        ):
            assert stream.status_code == 200
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "status":
                    events.append(json.loads(line[6:]))
                    first.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert first.wait(30), "no first event on the order's stream"
    response = http.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"reason": "container test"},
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    watcher.join(60)
    assert not watcher.is_alive(), "the stream did not end at the final status"
    assert [e["status"] for e in events] == ["PAID", "REFUNDED"], events

    refunded = http.get(f"/api/v1/orders/{order['id']}", headers=user).json()["data"]
    assert refunded["status"] == "REFUNDED"
    payments = http.get(f"/api/v1/orders/{order['id']}/payments", headers=user).json()["data"]
    assert sum(r["amountCents"] for r in payments["refunds"]) == order["totalCents"]
    assert stock_of(http, admin, product["id"]) == 10  # restocked: it had not shipped

    # Kept for the restart tests: a PAID order of another checkout.
    http.post("/api/v1/cart/items", headers=user, json={"productId": product["id"], "quantity": 1})
    response = checkout(http, user)
    assert response.status_code == 201, response.text
    kept.update(
        email=email, product=product["id"], orders={order["id"]: "REFUNDED", response.json()["data"]["id"]: "PAID"}
    )


def test_scaled_catalog_spreads_calls_over_both_replicas(stack: Stack, admin):
    """`--scale catalog=2`: the dns:/// targets and round_robin send work to every replica, as
    each replica's own RPC counter (read inside its container) shows."""
    containers = stack.container_ids("catalog")
    assert len(containers) == CATALOG_REPLICAS
    before = {c: stack.rpc_counts(c) for c in containers}
    product = create_product(stack.http, admin, stock=5, label="spread")
    for i in range(60):
        # Signed in and a fresh query each time: nothing served by the gateway's read cache.
        response = stack.http.get(f"/api/v1/products/{product['id']}", headers=admin)
        assert response.status_code == 200
        response = stack.http.get("/api/v1/products", params={"q": f"spread-{i}"})
        assert response.status_code == 200
    handled = {c: stack.rpc_counts(c) - before[c] for c in containers}
    assert sum(handled.values()) >= 120, handled
    # round_robin over two: roughly half each (a generous bound: other callers run meanwhile).
    assert all(count >= 30 for count in handled.values()), handled


def test_catalog_replica_killed_under_reads_and_checkouts(stack: Stack, admin):
    """SIGKILL of one catalog container, serving its share until then, during a steady stream of
    product reads and checkouts: every request answered successfully at the first try (reads and
    writes retried on the other replica by the channels' retry policy, inside the shop: no 503
    reaches the client) and stock taken exactly once per paid unit (no double reservation)."""
    http = stack.http
    products = [create_product(http, admin, stock=STOCK, label="kill") for _ in range(2)]

    buyers = [register(http, f"kill{i}")[1] for i in range(4)]
    stop = threading.Event()
    reads: list[int | str] = []
    checkouts: list[tuple[int, str]] = []  # (final status, order id)
    retried: list[tuple[str, str]] = []  # (request id, body) of each answer a client had to retry
    bought: dict[str, int] = {p["id"]: 0 for p in products}

    def reader(n: int) -> None:
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                product = products[i % 2]["id"]
                try:
                    response = client.get(f"/api/v1/products/{product}", headers=admin)
                    reads.append(response.status_code)
                    response = client.get("/api/v1/products", params={"q": f"kill-{n}-{i}"})
                    reads.append(response.status_code)
                except httpx.HTTPError as exc:
                    reads.append(type(exc).__name__)
                time.sleep(0.02)

    def buyer(user: dict, n: int) -> None:
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            i = 0
            while not stop.is_set():
                i += 1
                product = products[(n + i) % 2]["id"]
                response = client.post("/api/v1/cart/items", headers=user, json={"productId": product, "quantity": 1})
                assert response.status_code == 200, response.text
                key = str(uuid.uuid4())
                for _ in range(30):
                    response = checkout(client, user, key=key)
                    if response.status_code not in RETRYABLE:
                        break
                    # The documented client contract (503 + Retry-After, same key again), followed so
                    # that the final outcome is checked too; counted, and none is expected.
                    retried.append((response.headers.get("X-Request-ID", ""), response.text[:200]))
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                body = response.json()
                checkouts.append((response.status_code, body.get("data", {}).get("id") or json.dumps(body)))
                if response.status_code == 201:
                    bought[product] += 1
                time.sleep(0.1)

    replicas = stack.container_ids("catalog")
    assert len(replicas) == CATALOG_REPLICAS
    victim = replicas[-1]
    before = {c: stack.rpc_counts(c) for c in replicas}
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(reader, n) for n in range(2)] + [pool.submit(buyer, u, n) for n, u in enumerate(buyers)]
        try:
            time.sleep(4)
            # What each replica handled of the stream so far (its own counter, read inside it).
            served = {c: stack.rpc_counts(c) - before[c] for c in replicas}
            stack.docker_cmd("kill", victim)
            killed = stack.inspect(victim)["State"]["Running"] is False
            time.sleep(8)
        finally:
            stop.set()
        for future in futures:
            future.result(timeout=120)

    # The victim was serving its share until the kill (round_robin over both).
    assert all(count >= 10 for count in served.values()), served
    assert killed, "the catalog container still runs after docker kill"
    failed_reads = [r for r in reads if r != 200]
    failed_checkouts = [c for c in checkouts if c[0] != 201]
    assert not failed_reads, f"{len(failed_reads)} of {len(reads)} reads failed: {failed_reads[:10]}"
    assert not failed_checkouts, f"{len(failed_checkouts)} of {len(checkouts)} checkouts failed: {failed_checkouts[:5]}"
    if retried:
        ids = {request_id for request_id, _ in retried if request_id}
        logs = stack.compose("logs", "--no-color", "gateway", "orders", check=False, timeout=120).stdout
        seen = [line for line in logs.splitlines() if any(i in line for i in ids)][:40]
        joined = "\n".join(seen)
        raise AssertionError(f"{len(retried)} checkout answers were 503 (retried): {retried[:5]}\n{joined}")
    assert len(checkouts) >= 4 and len(reads) >= 50, (len(checkouts), len(reads))
    assert len({order for _, order in checkouts}) == len(checkouts)  # one order per checkout
    for product in products:
        assert stock_of(http, admin, product["id"]) == STOCK - bought[product["id"]], (product["id"], bought)
    stack.notes["kill"] = {"reads": len(reads), "checkouts": len(checkouts), "served before the kill": served}
    print(f"catalog kill: {len(reads)} reads, {len(checkouts)} checkouts, served before the kill: {served}")

    # The killed replica back (compose starts what is missing), for the tests after this one.
    with timed("catalog replica back"):
        stack.compose("up", "-d", "--wait", "--no-build", "--no-recreate", "--scale", f"catalog={CATALOG_REPLICAS}")
        stack.wait_ready()


def test_shop_containers_run_as_non_root_with_read_only_roots(stack: Stack):
    for service in TARGETS:
        for container in stack.container_ids(service):
            info = stack.inspect(container)
            assert info["Config"]["User"] == "10001:10001", (service, info["Config"]["User"])
            host = info["HostConfig"]
            assert host["ReadonlyRootfs"] is True, service
            assert host["CapDrop"] == ["ALL"], service
            assert "no-new-privileges:true" in host["SecurityOpt"], service
            assert stack.exec(container, "id", "-u").stdout.strip() == "10001"
            # Nothing writable but the /tmp tmpfs.
            denied = stack.exec(container, "sh", "-c", "touch /opt/venv/x", check=False)
            assert denied.returncode != 0 and "Read-only file system" in denied.stderr, (service, denied.stderr)
            assert stack.exec(container, "sh", "-c", "touch /tmp/x && rm /tmp/x", check=False).returncode == 0
    # PostgreSQL as far as its image allows: read-only root, root only to prepare its data directory
    # and socket (five capabilities), then the server runs as its own user, no new privileges.
    (postgres,) = stack.container_ids("postgres")
    host = stack.inspect(postgres)["HostConfig"]
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and set(host["CapAdd"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}
    status = stack.exec(postgres, "cat", "/proc/1/status").stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid != "0"
    # Redis: hardened like the shop's containers (no capability at all), password required, no
    # port published, nothing persisted (no volume: /data is a tmpfs).
    (redis,) = stack.container_ids("redis")
    info = stack.inspect(redis)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "10999:10999"
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert not host["PortBindings"]
    assert "/data" in host["Tmpfs"] and not [m for m in info["Mounts"] if m["Type"] == "volume"]
    status = stack.exec(redis, "cat", "/proc/1/status").stdout
    assert next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")) == "10999"
    assert stack.exec(redis, "sh", "-c", "touch /etc/x", check=False).returncode != 0
    assert stack.redis_cli("ping", auth=False).startswith("NOAUTH")
    assert stack.redis_cli("ping") == "PONG"
    assert stack.redis_cli("config", "get", "dir").startswith("NOPERM")  # no @dangerous commands
    # Only the gateway shares its network.
    for service in TARGETS:
        networks = stack.inspect(stack.container_ids(service)[0])["NetworkSettings"]["Networks"]
        assert any(name.endswith("_redis") for name in networks) == (service == "gateway"), service


def limit_hits_in_redis(stack: Stack) -> int:
    """Requests the gateways counted in Redis in the current minute: the entries of every overall
    (`all`) moving-window key, one per request (gateway/ratelimit.py)."""
    keys = stack.redis_cli("--scan", "--pattern", "shop-gateway-limits:*/all/*").split()
    return sum(int(stack.redis_cli("llen", key)) for key in keys)


def test_gateway_limits_in_redis_and_redis_loss_degrades_then_restores(stack: Stack, kept):
    """The gateway counts its rate limits in compose's Redis; with Redis stopped every request is
    still answered (per-process limits, a logged warning: no 500, no error), a logout still ends
    the session; with Redis started again the gateway counts there again by itself."""
    http = stack.http
    before = limit_hits_in_redis(stack)
    for _ in range(20):
        assert http.get("/api/v1/products").status_code == 200
    assert limit_hits_in_redis(stack) >= before + 20

    with timed("redis stop/start"):
        stack.compose("stop", "redis")
        statuses = []
        for _ in range(10):
            statuses.append(http.get("/api/v1/products").status_code)
            statuses.append(http.get("/readyz").status_code)
        # Auth writes (their own, stricter limit) and a logout (a revocation to publish).
        user = login(http, kept["email"], PASSWORD)
        assert http.get("/api/v1/auth/me", headers=user).status_code == 200
        statuses.append(http.post("/api/v1/auth/logout", headers=user).status_code)
        assert statuses == [200, 200] * 10 + [204], statuses
        # The ended session is refused all the same (this gateway's own revoked set).
        assert http.get("/api/v1/auth/me", headers=user).status_code == 401
        logs = stack.compose("logs", "--no-color", "gateway").stdout
        assert re.search(r"gateway\.redis_unavailable.*rate limits|rate limits.*gateway\.redis_unavailable", logs), (
            logs[-3000:]
        )

        stack.compose("start", "redis")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stack.redis_cli("ping") != "PONG":
            time.sleep(0.5)
        # Back in Redis once the gateway's retry pause (5 s) has passed; Redis came back empty.
        counted = 0
        while time.monotonic() < deadline:
            for _ in range(5):
                assert http.get("/api/v1/products").status_code == 200
            counted = limit_hits_in_redis(stack)
            if counted:
                break
            time.sleep(1)
    assert counted > 0, "the gateway did not count in Redis again"
    # And goes on counting there: a round of 10 requests all counted in Redis. A Redis answer slower
    # than the limiter's 0.25 s timeout on this loaded machine sends a few requests to memory for the
    # 5 s pause (by design, logged), so a later round may show it; the gateway stuck in memory fails.
    rounds: list[int] = []
    while time.monotonic() < deadline + 30 and (not rounds or rounds[-1] < 10):
        before = limit_hits_in_redis(stack)
        for _ in range(10):
            assert http.get("/api/v1/products").status_code == 200
        rounds.append(limit_hits_in_redis(stack) - before)
        if rounds[-1] < 10:
            time.sleep(RETRY_REDIS_SECONDS)
    assert rounds[-1] >= 10, f"requests counted in Redis per round of 10: {rounds}"


def test_production_mode_refuses_the_committed_development_secrets(stack: Stack):
    # Redis's start script refuses its development-only password too (deploy/compose/redis-server.sh).
    for service in (*TARGETS, "redis"):
        proc = stack.compose(
            "run", "--rm", "--no-deps", service, env={"SHOP_ENV": "production"}, check=False, timeout=120
        )
        assert proc.returncode == 78, (service, proc.returncode, proc.stderr[-2000:])
        assert "INSECURE-DEV-ONLY" in proc.stderr, (service, proc.stderr[-2000:])


def test_postgres_stopped_and_started_not_serving_then_serving_no_order_lost(stack: Stack, admin, kept):
    http = stack.http
    user = login(http, kept["email"], PASSWORD)
    product = create_product(http, admin, stock=5, label="pg")
    http.post("/api/v1/cart/items", headers=user, json={"productId": product["id"], "quantity": 1})
    response = checkout(http, user)
    assert response.status_code == 201, response.text
    kept["orders"][response.json()["data"]["id"]] = "PAID"

    with timed("postgres stop/start"):
        stack.compose("stop", "postgres")
        deadline = time.monotonic() + 60
        seen: dict = {}
        while time.monotonic() < deadline:
            response = http.get("/readyz", timeout=10)
            seen = response.json()["services"]
            if response.status_code == 503 and all(s == "NOT_SERVING" for s in seen.values()):
                break
            time.sleep(0.5)
        assert all(s == "NOT_SERVING" for s in seen.values()), seen

        stack.compose("start", "postgres")
        ready = stack.wait_ready(90)
    assert all(s == "SERVING" for s in ready["services"].values()), ready

    for order_id, status in kept["orders"].items():
        response = http.get(f"/api/v1/orders/{order_id}", headers=user)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == status
    # And the shop takes orders again.
    http.post("/api/v1/cart/items", headers=user, json={"productId": product["id"], "quantity": 1})
    response = checkout(http, user)
    assert response.status_code == 201, response.text
    kept["orders"][response.json()["data"]["id"]] = "PAID"


def test_down_then_up_keeps_the_data_and_seeds_the_demo_catalog_on_request(stack: Stack, kept):
    with timed("compose down (keep volumes)"):
        stack.compose("down", "--timeout", "20")
    assert stack.container_ids("postgres") == []
    # Up again, this time with the opt-in demo catalog (what a new user of compose would ask for).
    stack.env["SHOP_SEED_DEMO_DATA"] = "true"
    stack.up("compose up again")
    http = stack.http
    user = login(http, kept["email"], PASSWORD)  # the account survived
    listed = http.get("/api/v1/orders", headers=user)
    assert listed.status_code == 200, listed.text
    statuses = {o["id"]: o["status"] for o in listed.json()["data"]}
    assert statuses == kept["orders"]
    assert http.get(f"/api/v1/products/{kept['product']}").status_code == 200
    demo = http.get("/api/v1/products", params={"q": DEMO_NAME}).json()["data"]
    assert DEMO_SKU in [p["sku"] for p in demo]
    categories = {c["slug"] for c in http.get("/api/v1/categories").json()["data"]}
    assert {"electronics", "audio", "books", "containers"} <= categories
