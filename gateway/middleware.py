"""Pure-ASGI middleware every route shares: request context (id, security headers, metrics, logs),
per-IP rate limits, and the request body cap. Pure ASGI (not BaseHTTPMiddleware) so contextvars
such as the request id reach the route handlers and the gRPC client interceptor."""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter, Histogram

from gateway.config import GatewaySettings
from gateway.errors import error_body
from shop.lib.context import new_request_id, request_id_var

log = structlog.get_logger("gateway")

HTTP_REQUESTS = Counter("shop_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("shop_http_request_duration_seconds", "HTTP request time", ["method", "route"])

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_VALID_REQUEST_ID = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


_OF_INTEREST = (b"x-request-id", b"authorization", b"x-forwarded-proto")


def _headers_of_interest(scope: Scope) -> dict[bytes, str]:
    """The request headers the context middleware reads, in one pass (first value of each)."""
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        if key in _OF_INTEREST and key not in found:
            found[key] = value.decode("latin-1")
    return found


def client_ip(scope: Scope, is_trusted_proxy: Callable[[str], bool]) -> str:
    """The socket peer, or — only when the peer is a trusted proxy — the nearest untrusted
    address in X-Forwarded-For."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not is_trusted_proxy(peer):
        return peer
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    for candidate in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return peer
        if not is_trusted_proxy(candidate):
            return candidate
    return peer


async def send_error(send: Send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """X-Request-ID in and out, security headers, no-store on authenticated responses, metrics, logs."""

    def __init__(self, app, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = _headers_of_interest(scope)
        incoming = wanted.get(b"x-request-id", "")
        request_id = incoming if 0 < len(incoming) <= 128 and set(incoming) <= _VALID_REQUEST_ID else new_request_id()
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["client_ip"] = client_ip(scope, self.settings.is_trusted_proxy)
        https = scope.get("scheme") == "https" or (
            scope["state"]["client_ip"] != (scope.get("client") or ("",))[0]
            and wanted.get(b"x-forwarded-proto") == "https"
        )
        no_store = b"authorization" in wanted or scope["path"].startswith("/api/v1/auth/")
        status_holder = {"status": 500, "started": False}
        started = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append(HSTS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Answered here rather than by Starlette's outermost handler so the 500 still carries
            # the request id and the security headers; no internal detail reaches the client.
            log.exception("http.unhandled_error")
            if status_holder["started"]:
                raise
            await send_error(send_wrapper, 500, "INTERNAL", "Internal error.")
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], route_path, str(status_holder["status"])).inc()
            HTTP_LATENCY.labels(scope["method"], route_path).observe(elapsed)
            log.info("http", method=scope["method"], route=route_path, status=status_holder["status"],
                     duration_ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)


class FixedWindowLimiter:
    """Counts requests per key per minute window (per gateway instance)."""

    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window = window_seconds
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float | None = None) -> int | None:
        """None when allowed; else the seconds to wait (Retry-After)."""
        now = time.monotonic() if now is None else now
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.limit:
            return max(1, math.ceil(start + self.window - now))
        self._counts[key] = (start, count + 1)
        if len(self._counts) > 100_000:  # forget finished windows
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
        return None


class RateLimitMiddleware:
    """Per-client-IP limits: everything (SHOP_RATE_LIMIT_PER_MINUTE) and auth writes
    (SHOP_AUTH_RATE_LIMIT_PER_MINUTE); 0 turns a limit off."""

    def __init__(self, app, settings: GatewaySettings) -> None:
        self.app = app
        self.overall = FixedWindowLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        self.auth = (
            FixedWindowLimiter(settings.auth_rate_limit_per_minute) if settings.auth_rate_limit_per_minute else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        ip = scope.get("state", {}).get("client_ip", "unknown")
        checks = [self.overall]
        if scope["method"] != "GET" and scope["path"].startswith("/api/v1/auth/"):
            checks.append(self.auth)
        for limiter in checks:
            if limiter is None:
                continue
            retry_after = limiter.hit(ip)
            if retry_after is not None:
                await send_error(send, 429, "RATE_LIMITED", "Too many requests; slow down.",
                                 [(b"retry-after", str(retry_after).encode())])
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses bodies over the cap with 413 before any route reads them."""

    def __init__(self, app, settings: GatewaySettings) -> None:
        self.app = app
        self.limit = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_error(send, 413, "PAYLOAD_TOO_LARGE", f"The body is larger than {self.limit} bytes.")
            return
        # Read the body up to the cap (chunked bodies have no Content-Length), then replay it.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_error(send, 413, "PAYLOAD_TOO_LARGE", f"The body is larger than {self.limit} bytes.")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
