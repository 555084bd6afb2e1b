"""Per-client-IP rate limits, shared by every gateway replica through Redis.

The counting is the `limits` library's moving window (no burst of twice the limit at a window's
edge, as a fixed window allows). With `SHOP_REDIS_URL` the windows live in Redis, so N replicas
enforce one limit together; without it (the local run) they live in this process's memory.

When Redis does not answer, the limiter counts in this process's memory instead (a logged warning,
then a retry of Redis after `RETRY_REDIS_SECONDS`): the limits then multiply by the replica count
for a while, but never fall open, and a request never fails because of Redis.
"""

from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from gateway.caller import Scope
from gateway.config import GatewaySettings
from gateway.errors import send_error

log = structlog.get_logger("gateway")

# After a Redis failure, requests count in memory this long before Redis is tried again (so a dead
# Redis costs one connection attempt per this period, not one per request).
RETRY_REDIS_SECONDS = 5.0
NAMESPACE = "shop-gateway"


class SharedLimiter:
    """Moving-window hits against Redis when configured and answering, else against memory."""

    def __init__(self, redis_url: str = "", timeout: float = 0.25) -> None:
        self.memory = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        if redis_url:
            storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="shop-gateway-limits",
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            self.shared = MovingWindowRateLimiter(storage)
        self._redis_down_until = 0.0

    @property
    def degraded(self) -> bool:
        return self.shared is not None and time.monotonic() < self._redis_down_until

    def _current(self) -> MovingWindowRateLimiter:
        if self.shared is None or self.degraded:
            return self.memory
        return self.shared

    async def hit(self, item: RateLimitItem, *keys: str) -> int | None:
        """Counts one request; None when allowed, else the seconds to wait (Retry-After)."""
        limiter = self._current()
        try:
            allowed = await limiter.hit(item, *keys)
            if allowed:
                if limiter is self.shared and self._redis_down_until:
                    self._redis_down_until = 0.0
                    log.info("gateway.rate_limits_shared_again")
                return None
            stats = await limiter.get_window_stats(item, *keys)
        except Exception as exc:  # any Redis failure: count here instead, never let the request fail
            if limiter is self.memory:
                raise
            self._redis_down_until = time.monotonic() + RETRY_REDIS_SECONDS
            log.warning(
                "gateway.redis_unavailable", use="rate limits", fallback="per-process limits", error=type(exc).__name__
            )
            return await self.hit(item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))


class RateLimitMiddleware:
    """Per-client-IP limits: everything (SHOP_RATE_LIMIT_PER_MINUTE) and auth writes
    (SHOP_AUTH_RATE_LIMIT_PER_MINUTE); 0 turns a limit off. The client IP is the one
    RequestContextMiddleware worked out (gateway/caller.py)."""

    def __init__(self, app, settings: GatewaySettings, limiter: SharedLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self.overall = self._item(settings.rate_limit_per_minute)
        self.auth = self._item(settings.auth_rate_limit_per_minute)

    @staticmethod
    def _item(per_minute: int) -> RateLimitItem | None:
        return RateLimitItemPerMinute(per_minute, namespace=NAMESPACE) if per_minute else None

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        ip = scope.get("state", {}).get("client_ip", "unknown")
        checks = [("all", self.overall)]
        if scope["method"] != "GET" and scope["path"].startswith("/api/v1/auth/"):
            checks.append(("auth", self.auth))
        for name, item in checks:
            if item is None:
                continue
            retry_after = await self.limiter.hit(item, name, ip)
            if retry_after is not None:
                await send_error(
                    send,
                    429,
                    "RATE_LIMITED",
                    "Too many requests; slow down.",
                    [(b"retry-after", str(retry_after).encode())],
                )
                return
        await self.app(scope, receive, send)
