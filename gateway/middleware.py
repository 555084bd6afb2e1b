"""Pure-ASGI middleware every route shares: request context (id, client address, security headers,
metrics, logs) and the request body cap (the rate limits: gateway/ratelimit.py). Pure ASGI (not
BaseHTTPMiddleware) so contextvars such as the request id reach the route handlers and the gRPC
client interceptor."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter, Histogram

from gateway.caller import client_ip, header, is_https
from gateway.config import GatewaySettings
from gateway.errors import send_error
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


_OF_INTEREST = (b"x-request-id", b"authorization")


def _headers_of_interest(scope: Scope) -> dict[bytes, str]:
    """The request headers the context middleware reads, in one pass (first value of each)."""
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        if key in _OF_INTEREST and key not in found:
            found[key] = value.decode("latin-1")
    return found


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
        state = scope.setdefault("state", {})
        state["client_ip"] = client_ip(scope, self.settings.is_trusted_proxy)
        state["https"] = https = is_https(scope, self.settings.is_trusted_proxy)
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
            log.info(
                "http",
                method=scope["method"],
                route=route_path,
                status=status_holder["status"],
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)


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
