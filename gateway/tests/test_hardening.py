"""Issue 11, the gateway's part: limits and revocations shared by replicas through Redis, client IPs
behind a proxy, readiness while some backends are down, bounded order streams, metrics on their own
port, generic 5xx messages, a start without uvloop, and declared dependencies.

"Two gateways" here are mostly two gateway applications in this process, each with its own state
(limiter, revoked set, Redis connections), as two replicas have; they share only what Redis shares.
One test starts two real gateway processes for the same two properties."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from gateway.app import create_app
from gateway.config import GatewaySettings
from shop.lib.clients import SERVICES as SERVICES_BY_NAME
from shop.lib.errors import Unauthenticated
from tests.harness import free_port, identity_env, redis_test_url, run_process
from tests.invariants.orders_helpers import add_to_cart, checkout, eventually, make_product

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "catalog", "cart", "orders", "payments")


@contextlib.asynccontextmanager
async def gateway(suite, **overrides):
    """A gateway application on the suite's services, started (lifespan) and stopped around the block."""
    app = create_app(suite.gateway_settings(**overrides))
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def served(suite, **overrides):
    """A gateway behind a real uvicorn server (SSE streams need one: httpx's ASGI transport buffers
    whole responses): yields its app and a client."""
    port = free_port()
    server, task = await suite._serve_gateway(port, **overrides)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield server.config.app, http
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def client(app, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 4321)), base_url="http://gw", timeout=30
    )


def random_ip() -> str:
    """A client address no earlier run used: Redis keeps windows across runs."""
    return f"198.18.{random.randint(0, 255)}.{random.randint(1, 254)}"


# -- 1. shared limits and revocations (Redis) ------------------------------------------------------


async def test_two_gateways_enforce_one_limit_together(suite):
    url = redis_test_url()
    ip = random_ip()
    async with (
        gateway(suite, redis_url=url, rate_limit_per_minute=4) as one,
        gateway(suite, redis_url=url, rate_limit_per_minute=4) as two,
    ):
        async with client(one, ip) as a, client(two, ip) as b:
            codes = [(await c.get("/healthz")).status_code for c in (a, b, a, b, a, b)]
        async with client(one, random_ip()) as someone_else:
            other = await someone_else.get("/healthz")
    # four in the minute between both gateways, not four on each (today: 200 six times)
    assert codes == [200, 200, 200, 200, 429, 429]
    assert other.status_code == 200


async def test_a_logout_on_one_gateway_is_refused_on_the_other_within_a_second(suite):
    url = redis_test_url()
    user = await suite.register()
    token = user["tokens"]["accessToken"]
    # Both gateways poll auth only once a minute: what reaches the second one is Redis.
    async with (
        gateway(suite, redis_url=url, revocation_poll_seconds=60) as one,
        gateway(suite, redis_url=url, revocation_poll_seconds=60) as two,
    ):
        verifier = two.state.gateway.verifier
        await verifier.verify(token)  # accepted before
        await asyncio.sleep(0.3)  # both listeners subscribed
        async with client(one) as a:
            response = await a.post("/api/v1/auth/logout", headers=user["headers"], json={})
        assert response.status_code == 204, response.text
        ended = time.monotonic()

        async def refused() -> bool:
            try:
                await verifier.verify(token)
            except Unauthenticated:
                return True
            return False

        while not await refused():
            assert time.monotonic() - ended < 1.0, "the other gateway still accepts the session after 1 s"
            await asyncio.sleep(0.02)
        # and over HTTP: a signed-in read through the other gateway is a 401
        async with client(two) as b:
            answer = await b.get("/api/v1/orders", headers=user["headers"])
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_redis_down_means_per_process_limits_and_a_warning_never_a_500(suite):
    user = await suite.register()
    with structlog.testing.capture_logs() as logs:
        async with gateway(suite, redis_url="redis://127.0.0.1:1/0", rate_limit_per_minute=3) as app:
            async with client(app, random_ip()) as c:
                codes = [(await c.get("/healthz")).status_code for _ in range(5)]
            async with client(app, random_ip()) as c:
                # a logout still works: the revocation is local plus auth's poll for the others
                logout = await c.post("/api/v1/auth/logout", headers=user["headers"], json={})
    assert codes == [200, 200, 200, 429, 429]
    assert logout.status_code == 204
    warnings = [entry for entry in logs if entry["event"] == "gateway.redis_unavailable"]
    assert warnings and warnings[0]["log_level"] == "warning"


async def test_writes_fail_closed_while_revocations_cannot_be_fetched_and_reads_go_on(suite):
    """The gateway's revocation source (an auth replica of its own) stops: once no poll has
    succeeded for SHOP_REVOCATION_MAX_STALENESS_SECONDS, a signed-in write is refused with 503
    REVOCATIONS_UNAVAILABLE (a logged-out session must not keep buying meanwhile) and a signed-in
    read still answers."""
    from services.auth.server import build_server

    port = free_port()
    auth = build_server(suite.service_settings("auth", grpc_address=f"127.0.0.1:{port}"))
    await auth.start()
    running = True
    user = await suite.register()
    product = await make_product(suite, price=1000, stock=5)
    item = {"productId": product, "quantity": 1}
    try:
        async with gateway(
            suite, auth_target=f"127.0.0.1:{port}", revocation_poll_seconds=0.2, revocation_max_staleness_seconds=2
        ) as app:
            async with client(app) as c:
                before = await c.post("/api/v1/cart/items", json=item, headers=user["headers"])
                assert before.status_code == 200, before.text  # revocations fresh: writes pass
                await auth.stop(grace=0.5)
                running = False
                await asyncio.sleep(2.5)  # past the staleness bound without a successful poll
                write = await c.post("/api/v1/cart/items", json=item, headers=user["headers"])
                read = await c.get("/api/v1/cart", headers=user["headers"])
                anonymous = await c.get(f"/api/v1/products/{product}")
    finally:
        if running:
            await auth.stop(grace=0.5)
    assert write.status_code == 503, write.text
    assert write.json()["error"]["code"] == "REVOCATIONS_UNAVAILABLE" and "retry-after" in write.headers
    assert read.status_code == 200, read.text
    assert read.json()["data"]["items"][0]["quantity"] == 1  # the refused write changed nothing
    assert anonymous.status_code == 200


async def test_two_gateway_processes_share_one_limit_and_a_logout(suite, tmp_path):
    """Two real `python -m gateway` processes on one Redis, as two replicas run: the per-IP limit
    is one limit for both, and a logout through one is refused by the other within a second.

    Their revocation poll runs once a minute, so what carries the logout is Redis; their orders
    target is dead, so a read the gateway lets through answers 503 and only the gateway's own
    refusal answers 401 (the orders service learns revocations from auth by itself)."""
    ports = [free_port(), free_port()]
    env = {
        **{f"SHOP_{key.upper()}": str(value) for key, value in suite.common().items()},
        **identity_env("gateway"),
        "SHOP_ENV": "test",
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_HTTP_HOST": "127.0.0.1",
        "SHOP_REDIS_URL": redis_test_url(),
        "SHOP_RATE_LIMIT_PER_MINUTE": "4",
        "SHOP_AUTH_RATE_LIMIT_PER_MINUTE": "0",
        # The limit is keyed on the client this test names (Redis keeps windows across runs).
        "SHOP_TRUSTED_PROXIES": "127.0.0.1",
        "SHOP_REVOCATION_POLL_SECONDS": "60",
        "SHOP_ORDERS_TARGET": "127.0.0.1:1",
    }
    processes = [
        run_process([sys.executable, "-m", "gateway"], {**env, "SHOP_HTTP_PORT": str(port)}, tmp_path / f"gw{port}.log")
        for port in ports
    ]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}", timeout=10) as b,
        ):
            for http, process in ((a, processes[0]), (b, processes[1])):
                await started(http, process, tmp_path)

            def as_client(ip: str, headers: dict | None = None) -> dict:
                return {"X-Forwarded-For": ip, **(headers or {})}

            ip = random_ip()
            codes = [(await c.get("/healthz", headers=as_client(ip))).status_code for c in (a, b, a, b, a, b)]
            # four in the minute between both processes, not four on each
            assert codes == [200, 200, 200, 200, 429, 429]
            assert (await a.get("/healthz", headers=as_client(random_ip()))).status_code == 200

            user = await suite.register()
            accepted = await b.get("/api/v1/orders", headers=as_client(random_ip(), user["headers"]))
            assert accepted.status_code == 503, accepted.text  # the session passed b's own check
            logout = await a.post("/api/v1/auth/logout", headers=as_client(random_ip(), user["headers"]), json={})
            assert logout.status_code == 204, logout.text
            ended = time.monotonic()
            while True:
                answer = await b.get("/api/v1/orders", headers=as_client(random_ip(), user["headers"]))
                if answer.status_code == 401:
                    break
                assert answer.status_code == 503, answer.text
                assert time.monotonic() - ended < 1.0, "the other gateway still accepts the session after 1 s"
                await asyncio.sleep(0.02)
            assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


async def started(http: httpx.AsyncClient, process: subprocess.Popen, tmp_path: Path) -> None:
    """Until the gateway process answers (any answer: its limit may already count this address)."""
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, gateway_logs(tmp_path)
        try:
            await http.get("/healthz", headers={"X-Forwarded-For": random_ip()})
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the gateway did not start\n{gateway_logs(tmp_path)}"
            await asyncio.sleep(0.1)


def gateway_logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text()[-2000:] for path in sorted(tmp_path.glob("gw*.log")))


# -- 2. client IPs behind a proxy ------------------------------------------------------------------


def deployed_gateway_settings(**overrides) -> GatewaySettings:
    """GatewaySettings as the Kubernetes base configures them (deploy/k8s/base/config/gateway.env)."""
    values: dict[str, Any] = {}  # the env file's text, parsed by the settings model
    for line in (ROOT / "deploy/k8s/base/config/gateway.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("SHOP_").lower()] = value.strip()
    values.update(overrides)
    return GatewaySettings(**{key: value for key, value in values.items() if key in GatewaySettings.model_fields})


def test_the_kubernetes_config_trusts_the_ingress_controllers_of_common_clusters():
    settings = deployed_gateway_settings()
    for ingress_pod in ("10.244.1.17", "10.42.0.9", "172.17.0.4", "192.168.3.9", "100.64.2.8", "fd00::12"):
        assert settings.is_trusted_proxy(ingress_pod), ingress_pod
    for client_address in ("203.0.113.7", "8.8.8.8", "2001:db8::1"):
        assert not settings.is_trusted_proxy(client_address), client_address


async def test_behind_the_deployed_proxy_rule_each_client_has_its_own_limit(suite):
    deployed = deployed_gateway_settings()
    async with gateway(suite, trusted_proxies=deployed.trusted_proxies, auth_rate_limit_per_minute=2) as app:

        async def forgot(peer: str, forwarded: str) -> int:
            async with client(app, peer) as c:
                response = await c.post(
                    "/api/v1/auth/password/forgot",
                    json={"email": "x@example.com"},
                    headers={"X-Forwarded-For": forwarded},
                )
                return response.status_code

        ingress = "10.244.0.7"
        first = [await forgot(ingress, "203.0.113.10") for _ in range(3)]
        # another client through the same ingress pod has its own window
        second = [await forgot(ingress, "198.51.100.1, 203.0.113.11") for _ in range(2)]
        # an untrusted peer that sends X-Forwarded-For is still keyed on itself
        spoofed = [await forgot("203.0.113.99", f"192.0.2.{i}") for i in range(3)]
    assert first[:2] != [429, 429] and first[2] == 429
    assert 429 not in second
    assert spoofed[2] == 429


async def test_the_session_records_the_forwarded_client_and_secure_cookies_follow_the_proxy(suite):
    user = await suite.register()
    async with gateway(suite, trusted_proxies="10.0.0.0/8") as app:
        async with client(app, "10.1.2.3") as c:
            login = await c.post(
                "/api/v1/auth/login",
                json={"email": user["email"], "password": user["password"]},
                headers={"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https"},
            )
            assert login.status_code == 200, login.text
            assert "secure" in login.headers["set-cookie"].lower()
            headers = {"Authorization": f"Bearer {login.json()['data']['tokens']['accessToken']}"}
            sessions = (await c.get("/api/v1/auth/sessions", headers=headers)).json()["data"]
        async with client(app, "203.0.113.60") as direct:
            spoofed = await direct.post(
                "/api/v1/auth/login",
                json={"email": user["email"], "password": user["password"]},
                headers={"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https"},
            )
    assert "203.0.113.50" in {s["ip"] for s in sessions}
    assert "secure" not in spoofed.headers["set-cookie"].lower()


def test_one_client_ip_and_one_bearer_parser_in_the_gateway():
    sources = {path: path.read_text() for path in (ROOT / "gateway").rglob("*.py") if "tests" not in path.parts}
    forwarded = [
        str(p)
        for p, text in sources.items()
        if 'b"x-forwarded-for"' in text or "'x-forwarded-for'" in text or '"x-forwarded-for"' in text
    ]
    assert forwarded == [str(ROOT / "gateway/caller.py")]
    parsers = [str(p) for p, text in sources.items() if re.search(r"\.partition\(\" \"\)", text)]
    assert parsers == [str(ROOT / "gateway/caller.py")]
    assert not [p for p, text in sources.items() if "shop.lib.server import bearer_token" in text]


def test_the_readme_says_cidr_ranges_are_accepted():
    readme = (ROOT / "README.md").read_text()
    assert "no CIDR" not in readme and "Until the gateway accepts a CIDR" not in readme
    # and says what is true: the settings row and the rate-limit section both name CIDR ranges
    row = next(line for line in readme.splitlines() if line.startswith("| `SHOP_TRUSTED_PROXIES` |"))
    assert "IPs or CIDR ranges" in row
    assert "the peer is in `SHOP_TRUSTED_PROXIES` (IPs or CIDR ranges)" in " ".join(readme.split())
    assert GatewaySettings(trusted_proxies="10.0.0.0/8").is_trusted_proxy("10.1.2.3")  # as it says


# -- 3. readiness while some backends are down ------------------------------------------------------


async def test_browsing_works_while_orders_is_down(suite):
    user = await suite.register()
    product = await make_product(suite, price=1000, stock=3)
    async with gateway(suite, orders_target="127.0.0.1:1", readiness_timeout_seconds=0.5) as app:
        async with client(app) as c:
            ready = await c.get("/readyz")
            listing = await c.get("/api/v1/products")
            one = await c.get(f"/api/v1/products/{product}")
            orders = await c.get("/api/v1/orders", headers=user["headers"])
    assert ready.status_code == 200 and ready.json()["services"]["orders"] == "UNAVAILABLE"
    assert listing.status_code == 200 and one.status_code == 200
    assert orders.status_code == 503
    error = orders.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    # 5. a generic message: nothing of gRPC's text, no host:port
    assert error["message"] == "The service is unavailable right now; try again shortly."
    assert "127.0.0.1" not in orders.text and ":1" not in orders.text and "details" not in error


async def test_a_backend_that_does_not_answer_in_time_is_a_generic_504(suite):
    """A hung backend (it accepts connections and never answers): its DEADLINE_EXCEEDED is a 504
    with the generic message, nothing of gRPC's text and no host:port."""
    held: list[asyncio.StreamWriter] = []  # kept open: the backend never answers nor hangs up
    silent = await asyncio.start_server(lambda _reader, writer: held.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    user = await suite.register()
    try:
        async with gateway(suite, orders_target=f"127.0.0.1:{port}", rpc_timeout_seconds=0.5) as app:
            async with client(app) as c:
                started = time.monotonic()
                orders = await c.get("/api/v1/orders", headers=user["headers"])
                took = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
    assert orders.status_code == 504, orders.text
    error = orders.json()["error"]
    assert error["code"] == "DEADLINE_EXCEEDED"
    assert error["message"] == "The service did not answer in time; try again shortly."
    assert str(port) not in orders.text and "127.0.0.1" not in orders.text and "details" not in error
    assert took < 5, took


async def test_ready_while_some_backends_answer_and_503_when_none_does(suite):
    """One backend down no longer takes the gateway out of its Service (it was 503); with no
    backend SERVING there is nothing to serve: 503, so the Service stops sending it traffic."""
    async with gateway(suite, catalog_target="127.0.0.1:1", readiness_timeout_seconds=0.5) as app:
        async with client(app) as c:
            some = await c.get("/readyz")
    assert some.status_code == 200
    assert some.json()["services"]["catalog"] == "UNAVAILABLE"
    assert some.json()["services"]["auth"] == "SERVING"
    nothing = {f"{name}_target": "127.0.0.1:1" for name in SERVICES}
    async with gateway(suite, readiness_timeout_seconds=0.5, **nothing) as app:
        async with client(app) as c:
            none = await c.get("/readyz")
    assert none.status_code == 503
    assert none.json()["services"] == {name: "UNAVAILABLE" for name in SERVICES}


# -- 4. order event streams --------------------------------------------------------------------------


async def paid_order(suite, user=None):
    user = user or await suite.register()
    product = await make_product(suite, price=1500, stock=10)
    await add_to_cart(suite, user, product, 1)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    return user, response.json()["data"]


LINES: dict[int, Any] = {}  # response id -> its line iterator


async def first_event(response) -> dict:
    """The next `data:` of a stream. One line iterator per response, kept: a dropped iterator
    closes the response when it is collected (the server then sees the client leave)."""
    lines = LINES.setdefault(id(response), response.aiter_lines())
    async for line in lines:
        if line.startswith("data:"):
            return json.loads(line[5:])
    raise AssertionError("stream ended")


async def test_streams_are_capped_per_user_and_per_gateway(suite):
    user, order = await paid_order(suite)
    other, other_order = await paid_order(suite)
    path = f"/api/v1/orders/{order['id']}/events"
    async with served(suite, sse_max_streams_per_user=2, sse_max_streams=3) as (app, c):
        async with (
            c.stream("GET", path, headers=user["headers"]) as s1,
            c.stream("GET", path, headers=user["headers"]) as s2,
        ):
            await first_event(s1)
            await first_event(s2)
            third = await c.get(path, headers=user["headers"])
            async with c.stream("GET", f"/api/v1/orders/{other_order['id']}/events", headers=other["headers"]) as s3:
                await first_event(s3)
                full = await c.get(f"/api/v1/orders/{other_order['id']}/events", headers=other["headers"])
        hub = app.state.gateway.streams
        await eventually(lambda: hub.open_count == 0, timeout=10, interval=0.05)
        # a stream of an order that is not the caller's is a JSON 404 and holds no slot
        stranger = await c.get(path, headers=other["headers"])
        assert hub.open_count == 0
    assert third.status_code == 429 and third.json()["error"]["code"] == "TOO_MANY_STREAMS"
    assert full.status_code == 503 and full.json()["error"]["code"] == "STREAMS_UNAVAILABLE"
    assert "retry-after" in full.headers
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "ORDER_NOT_FOUND"


async def test_a_stream_ends_at_its_maximum_lifetime(suite):
    user, order = await paid_order(suite)
    async with served(suite, sse_max_lifetime_seconds=1.0) as (_app, c):
        started = time.monotonic()
        async with c.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as s:
            lines = [line async for line in s.aiter_lines()]
        took = time.monotonic() - started
    assert any(line.startswith("data:") for line in lines)  # the current status came first
    assert took < 5, took


async def test_revoking_the_session_ends_its_streams(suite):
    user, order = await paid_order(suite)
    async with served(suite) as (_app, c):
        async with c.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as s:
            assert (await first_event(s))["status"] == "PAID"
            logout = await c.post("/api/v1/auth/logout", headers=user["headers"], json={})
            assert logout.status_code == 204

            async def rest():
                return [line async for line in LINES[id(s)]]

            lines = await asyncio.wait_for(rest(), 5)
    assert "event: error" in lines
    assert json.loads([line for line in lines if line.startswith("data:")][-1][5:]) == {"code": "UNAUTHENTICATED"}


async def test_streams_share_one_read_per_order_and_never_watch_in_orders(suite, monkeypatch):
    user, order = await paid_order(suite)
    async with served(suite, sse_poll_seconds=0.2) as (app, c):
        state = app.state.gateway
        reads = []
        real = state.clients.orders.GetOrder

        def counting(request, **kwargs):
            reads.append(request.order_id)
            return real(request, **kwargs)

        monkeypatch.setattr(state.clients.orders, "GetOrder", counting)
        path = f"/api/v1/orders/{order['id']}/events"
        async with contextlib.AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(c.stream("GET", path, headers=user["headers"])) for _ in range(4)
            ]
            for s in streams:
                await first_event(s)
            # no WatchOrder (nor any stream) in the orders service: it holds and polls nothing for these
            orders_rpcs = SERVICES_BY_NAME["orders"][0].methods
            assert not [rpc.name for rpc in orders_rpcs if rpc.server_streaming or rpc.name == "WatchOrder"]
            before = len(reads)
            await asyncio.sleep(1.0)
            during = len(reads) - before
    # ~5 passes of the hub in that second, one read each for the four streams (not 4 per pass)
    assert 2 <= during <= 8, during


# -- 5. metrics on their own port, a start without uvloop -------------------------------------------


def test_the_gateway_starts_without_uvloop_and_serves_metrics_on_their_own_port(tmp_path):
    http_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SHOP_HTTP_PORT": str(http_port),
        "SHOP_METRICS_PORT": str(metrics_port),
        "SHOP_ENV": "test",
        "SHOP_LOG_LEVEL": "WARNING",
    }
    # uvloop made unimportable, as on a platform without it
    code = "import sys; sys.modules['uvloop'] = None; import runpy; runpy.run_module('gateway', run_name='__main__')"
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None  # stdout=PIPE
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)
        assert health.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "shop_http_requests_total" in metrics.text
        assert httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).status_code == 404
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        if process.poll() is None:
            process.kill()


# -- 6. dependency floors ------------------------------------------------------------------------------


def declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {}
    for requirement in project["project"]["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", requirement.split(";")[0].strip())
        assert match is not None, requirement
        found[match.group(1).lower().replace("_", "-")] = match.group(3)
    return found


def test_floors_match_what_the_generated_code_requires():
    deps = declared()
    grpc_pb = (ROOT / "libs/shop/auth/v1/auth_pb2_grpc.py").read_text()
    found = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc_pb)
    assert found is not None
    grpc_version = found.group(1)
    pb = (ROOT / "libs/shop/auth/v1/auth_pb2.py").read_text()
    found = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+)", pb)
    assert found is not None
    major, minor, patch = found.groups()
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection", "grpcio-status"):
        assert deps[name] == f">={grpc_version}", name
    assert deps["protobuf"] == f">={major}.{minor}.{patch}"


def test_every_imported_third_party_package_is_declared():
    import importlib.metadata as metadata

    deps = set(declared())
    modules = set()
    for folder in ("gateway", "services", "libs/shop"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" in path.parts or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            for line in path.read_text().splitlines():
                match = re.match(r"\s*(?:from|import)\s+([A-Za-z_][\w.]*)", line)
                if match:
                    modules.add(match.group(1))
    owners = metadata.packages_distributions()
    missing = set()
    for module in modules:
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("shop", "services", "gateway", "tests"):
            continue
        candidates = {d.lower().replace("_", "-") for d in owners.get(top, [])}
        if top in ("google", "opentelemetry"):  # namespace packages: find the distribution of the module
            candidates = {dist_of(module)}
        assert candidates, module
        if not candidates & deps:
            missing.add(f"{module} ({', '.join(sorted(candidates))})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def dist_of(module: str) -> str:
    """The distribution that ships a module of a namespace package (google.*, opentelemetry.*)."""
    import importlib.metadata as metadata

    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth])
        for dist in metadata.distributions():
            for file in dist.files or ():
                name = str(file)
                if name.startswith(prefix + "/") or name == prefix + ".py":
                    return dist.metadata["Name"].lower().replace("_", "-")
    pytest.fail(f"no distribution owns {module}")
