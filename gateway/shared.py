"""What every gateway replica shares through Redis (`SHOP_REDIS_URL`) besides the rate limits
(gateway/ratelimit.py): the revoked-session set and the nudges of order streams.

Revoked sessions — chosen design: publish and subscribe, backed by a set with expiry.
- A gateway that ends a session (logout, revoke, account deletion) adds it to its own set at once,
  then in one Redis transaction adds it to the sorted set `KEY_REVOKED` (score: when the entry may
  be forgotten, an access token's lifetime plus a margin) and publishes it on `CHANNEL_REVOKED`.
- Every gateway keeps one subscription to `CHANNEL_REVOKED` and adds what arrives: another replica
  refuses the session within the pub/sub delivery time (milliseconds), well inside a second.
- After (re)subscribing, a gateway reads the whole sorted set, so revocations published while it
  was starting or cut off from Redis are not lost (subscribe first, then read: nothing falls
  between the two).
- Auth's ListRevocations poll (shop.lib.runtime) still runs: it is the authority and covers
  sessions that auth ended itself (password change, suspension) and any time Redis is down.

Order streams: a gateway that changes an order (cancel, status, refund) publishes the order id on
`CHANNEL_ORDERS`; every gateway's stream hub (gateway/streams.py) then reads that order at once
instead of at its next poll.

Redis trouble never fails a request: publishing logs a warning and goes on; the listener
reconnects after `RECONNECT_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from shop.lib.tokens import REVOCATION_MEMORY, RevokedSessions

log = structlog.get_logger("gateway")

KEY_REVOKED = "shop:gateway:revoked-sessions"
CHANNEL_REVOKED = "shop:gateway:revoked"
CHANNEL_ORDERS = "shop:gateway:order-changed"
# Kept as long as an access token of the session can still be presented (plus clock margin).
REVOKED_TTL_SECONDS = REVOCATION_MEMORY.total_seconds()
RECONNECT_SECONDS = 1.0


def redis_client(url: str, timeout: float):
    """A client for short commands (every call bounded by `timeout`)."""
    import redis.asyncio as redis

    return redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class SharedState:
    """The gateway's Redis link for revocations and order nudges; a no-op without a Redis URL."""

    def __init__(self, url: str, timeout: float, revoked: RevokedSessions) -> None:
        self.url = url
        self.timeout = timeout
        self.revoked = revoked
        self.redis = redis_client(url, timeout) if url else None
        self._order_listeners: list[Callable[[str], None]] = []
        self._revocation_listeners: list[Callable[[str], None]] = []

    @property
    def enabled(self) -> bool:
        return self.redis is not None

    def on_order_changed(self, listener: Callable[[str], None]) -> None:
        self._order_listeners.append(listener)

    def on_revoked(self, listener: Callable[[str], None]) -> None:
        self._revocation_listeners.append(listener)

    def _add_revoked(self, session_id: str) -> None:
        self.revoked.add(session_id)
        for listener in self._revocation_listeners:
            listener(session_id)

    async def revoke(self, session_ids: Iterable[str]) -> None:
        """This gateway refuses the sessions at once; every other replica within ~milliseconds."""
        ids = [sid for sid in session_ids if sid]
        for sid in ids:
            self._add_revoked(sid)
        if not ids or self.redis is None:
            return
        now = time.time()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(KEY_REVOKED, {sid: now + REVOKED_TTL_SECONDS for sid in ids})
                pipe.zremrangebyscore(KEY_REVOKED, "-inf", now)
                pipe.publish(CHANNEL_REVOKED, ",".join(ids))
                await pipe.execute()
        except Exception as exc:
            # The others still learn it from auth's revocation poll (about a second later).
            log.warning("gateway.redis_unavailable", use="revocations", error=type(exc).__name__)

    async def order_changed(self, order_id: str) -> None:
        """Every gateway's stream hub (this one included) reads the order now."""
        if self.redis is None:
            self._deliver_order(order_id)
            return
        try:
            await self.redis.publish(CHANNEL_ORDERS, order_id)
        except Exception as exc:
            log.warning("gateway.redis_unavailable", use="order streams", error=type(exc).__name__)
            self._deliver_order(order_id)

    def _deliver_order(self, order_id: str) -> None:
        for listener in self._order_listeners:
            listener(order_id)

    async def _load_revoked(self) -> None:
        assert self.redis is not None
        for sid in await self.redis.zrangebyscore(KEY_REVOKED, time.time(), "+inf"):
            self.revoked.add(sid.decode() if isinstance(sid, bytes) else sid)

    def _receive(self, message: dict) -> None:
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
        if channel == CHANNEL_REVOKED:
            for sid in data.split(","):
                if sid:
                    self._add_revoked(sid)
        elif channel == CHANNEL_ORDERS:
            self._deliver_order(data)

    async def listen_forever(self) -> None:
        """One subscription per gateway; reconnects (and re-reads the set) after any failure."""
        if self.redis is None:
            return
        import redis.asyncio as redis

        warned = False
        while True:
            # A client of its own without a read timeout: a quiet channel is not a failure.
            listener = redis.from_url(self.url, socket_connect_timeout=self.timeout, health_check_interval=10)
            try:
                async with listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL_REVOKED, CHANNEL_ORDERS)
                    await self._load_revoked()
                    if warned:
                        log.info("gateway.redis_available_again", use="revocations")
                        warned = False
                    while True:
                        message = await pubsub.get_message(timeout=5.0)
                        if message is not None:
                            self._receive(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not warned:
                    log.warning(
                        "gateway.redis_unavailable",
                        use="revocations",
                        fallback="auth's revocation poll",
                        error=type(exc).__name__,
                    )
                    warned = True
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                await listener.aclose()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
