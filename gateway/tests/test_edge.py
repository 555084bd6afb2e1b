"""Gateway behaviour every route shares (API.md "Gateway behaviour"), through the real gateway."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.app import create_app


async def test_healthz_and_readyz_report_every_service(http):
    assert (await http.get("/healthz")).status_code == 200
    response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["services"] == {
        name: "SERVING" for name in ("auth", "catalog", "cart", "orders", "payments")
    }


async def test_unknown_route_and_wrong_method_use_the_envelope(http):
    response = await http.get("/api/v1/nope", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "NOT_FOUND", "message": "No such route.", "requestId": "abc-123"}}
    assert response.headers["x-request-id"] == "abc-123"
    response = await http.delete("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_request_id_generated_and_security_headers_present(http):
    response = await http.get("/healthz")
    assert len(response.headers["x-request-id"]) >= 16
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in response.headers
    # a request id that could inject into logs or headers is replaced
    response = await http.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


async def test_body_over_one_mib_is_413(http):
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    response = await http.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():
        for _ in range(20):
            yield b" " * 65536

    response = await http.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_cors_allow_list(http):
    allowed = "http://localhost:5173"
    preflight = await http.options(
        "/api/v1/products",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed
    assert preflight.headers["access-control-allow-credentials"] == "true"
    response = await http.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    response = await http.get("/healthz", headers={"Origin": allowed})
    assert response.headers["access-control-allow-origin"] == allowed


async def test_metrics_are_not_public_and_openapi(http):
    await http.get("/healthz")
    # Issue 11: the metrics have their own port (gateway/tests/test_hardening.py); the public one says 404.
    metrics = await http.get("/metrics")
    assert metrics.status_code == 404
    assert metrics.json()["error"]["code"] == "NOT_FOUND"
    spec = (await http.get("/openapi.json")).json()
    assert spec["info"]["title"] == "The Shop API"
    # validation errors are documented as answered: 400 in the error envelope, never FastAPI's 422;
    # the only 422 is a reused Idempotency-Key's (test_contract checks those five operations)
    operations = [op for path in spec["paths"].values() for op in path.values()]
    unprocessable = [op["responses"]["422"] for op in operations if "422" in op["responses"]]
    assert len(unprocessable) == 5
    assert all(r["description"].startswith("IDEMPOTENCY_KEY_REUSED") for r in unprocessable), unprocessable
    login = spec["paths"]["/api/v1/auth/login"]["post"]["responses"]["400"]
    assert login["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorEnvelope"
    assert (await http.get("/docs")).status_code == 200


@pytest.mark.parametrize("limit_setting", ["rate_limit_per_minute"])
async def test_overall_rate_limit_per_ip_with_retry_after(suite, limit_setting):
    app = create_app(suite.gateway_settings(**{limit_setting: 5}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.1.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            statuses = [(await client.get("/healthz")).status_code for _ in range(7)]
            limited = await client.get("/healthz")
        other = httpx.ASGITransport(app=app, client=("10.1.1.2", 1234))
        async with httpx.AsyncClient(transport=other, base_url="http://gw") as client:
            assert (await client.get("/healthz")).status_code == 200
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_auth_write_limit_and_trusted_proxy(suite):
    app = create_app(suite.gateway_settings(auth_rate_limit_per_minute=3, trusted_proxies="10.0.0.0/29, 10.0.0.9"))
    async with app.router.lifespan_context(app):
        # through the trusted proxy, X-Forwarded-For names the client
        proxy = httpx.ASGITransport(app=app, client=("10.0.0.9", 1))
        async with httpx.AsyncClient(transport=proxy, base_url="http://gw") as client:
            codes = [
                (
                    await client.post(
                        "/api/v1/auth/password/forgot",
                        json={"email": "x@example.com"},
                        headers={"X-Forwarded-For": "203.0.113.7"},
                    )
                ).status_code
                for _ in range(4)
            ]
            other = await client.post(
                "/api/v1/auth/password/forgot",
                json={"email": "x@example.com"},
                headers={"X-Forwarded-For": "203.0.113.8"},
            )
            reads = [
                (await client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})).status_code for _ in range(3)
            ]
        # an untrusted peer cannot choose its identity with X-Forwarded-For
        direct = httpx.ASGITransport(app=app, client=("198.51.100.1", 1))
        async with httpx.AsyncClient(transport=direct, base_url="http://gw") as client:
            spoofed = [
                (
                    await client.post(
                        "/api/v1/auth/password/forgot",
                        json={"email": "x@example.com"},
                        headers={"X-Forwarded-For": f"192.0.2.{i}"},
                    )
                ).status_code
                for i in range(4)
            ]
    assert codes[3] == 429 and all(code != 429 for code in codes[:3])
    assert other.status_code != 429
    assert reads == [200, 200, 200]
    assert spoofed[3] == 429


def test_trusted_proxies_accept_ips_and_cidr_ranges(suite):
    settings = suite.gateway_settings(trusted_proxies="10.0.0.9, 10.244.0.0/16, fd00::/8")
    assert settings.is_trusted_proxy("10.0.0.9")
    assert settings.is_trusted_proxy("10.244.3.17")
    assert settings.is_trusted_proxy("fd00::1")
    assert not settings.is_trusted_proxy("10.245.0.1")
    assert not settings.is_trusted_proxy("not-an-ip")


async def test_concurrent_requests_keep_their_own_request_ids(http):
    responses = await asyncio.gather(*(http.get("/healthz", headers={"X-Request-ID": f"r-{i}"}) for i in range(20)))
    assert [r.headers["x-request-id"] for r in responses] == [f"r-{i}" for i in range(20)]


async def test_lone_surrogates_are_400_with_the_request_id(http):
    body = b'{"email": "a\\ud800@example.com", "password": "x"}'
    response = await http.post(
        "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json", "X-Request-ID": "surrogate-1"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["requestId"] == "surrogate-1"


async def test_an_unexpected_error_is_a_bare_500_with_the_request_id(suite):
    from fastapi import APIRouter

    app = create_app(suite.gateway_settings())
    boom = APIRouter()

    @boom.get("/boom")
    async def explode():
        raise RuntimeError("secret internal detail")

    app.include_router(boom)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "INTERNAL", "message": "Internal error.", "requestId": "boom-1"}}
    assert response.headers["x-request-id"] == "boom-1"
    assert "secret" not in response.text
