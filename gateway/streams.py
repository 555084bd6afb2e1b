"""Order event streams (`GET /api/v1/orders/{id}/events`, Server-Sent Events): one source per
gateway, fanned out to every open stream.

How a stream learns of changes: the hub (`OrderStreams.run_forever`, one task per gateway) reads
each *watched order* once per `SHOP_SSE_POLL_SECONDS` with `GetOrder`, whatever the number of
streams on it, and hands the order to all of them; each stream writes the history entries it has
not sent yet. A gateway that changes an order (cancel, status, refund) nudges every replica's hub
through Redis (gateway/shared.py), which reads that order at once. Nothing polls per stream: with
S streams over O distinct orders the orders service answers O reads per poll period (its old
WatchOrder RPC, a database poll per stream every second, is gone).

Bounds (each answered with a stable code):
- per user: `SHOP_SSE_MAX_STREAMS_PER_USER` open streams on this gateway → 429 TOO_MANY_STREAMS (per
  replica: the hub and its counts live in this process, so N replicas allow N times as many);
- per gateway: `SHOP_SSE_MAX_STREAMS` → 503 STREAMS_UNAVAILABLE (with Retry-After);
- lifetime: `SHOP_SSE_MAX_LIFETIME_SECONDS`, and never past the access token's expiry; the stream
  then ends (clients reconnect with a fresh token, as after any disconnect);
- a revoked session ends its streams with `event: error` `{"code": "UNAUTHENTICATED"}` at the
  hub's next pass, or at once when the revocation passes through this gateway or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import grpc
import structlog

from gateway.config import GatewaySettings
from gateway.errors import ApiError
from shop.lib.clients import ServiceClients
from shop.lib.errors import decode_rpc_error
from shop.lib.tokens import RevokedSessions
from shop.orders.v1 import orders_pb2

log = structlog.get_logger("gateway")

FINAL_STATUSES = frozenset(
    orders_pb2.OrderStatus.Value(f"ORDER_STATUS_{name}")
    for name in ("PAYMENT_FAILED", "DELIVERED", "CANCELLED", "REFUNDED")
)
# How many GetOrder reads the hub runs at once.
READ_CONCURRENCY = 16
STREAMS_RETRY_AFTER_SECONDS = 5


@dataclass(eq=False)
class Stream:
    """One open SSE stream: what the hub puts in its queue is an Order or an `End`."""

    order_id: str
    user_id: str
    session_id: str
    token: str
    deadline: float  # time.monotonic() after which the stream ends
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ended: bool = False

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def end(self, code: str | None = None) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(End(code))


@dataclass(frozen=True)
class End:
    code: str | None  # None: a quiet end (lifetime); else an error code for `event: error`


class OrderStreams:
    def __init__(self, settings: GatewaySettings, clients: ServiceClients, revoked: RevokedSessions) -> None:
        self.settings = settings
        self.clients = clients
        self.revoked = revoked
        self._by_order: dict[str, set[Stream]] = {}
        self._per_user: dict[str, int] = {}
        self._count = 0
        self._nudged: set[str] = set()
        self._wake = asyncio.Event()

    @property
    def open_count(self) -> int:
        return self._count

    def open(self, order_id: str, user_id: str, session_id: str, token: str, token_expiry: float | None) -> Stream:
        """Registers a stream or refuses it (ApiError) when a cap is reached."""
        if self._per_user.get(user_id, 0) >= self.settings.sse_max_streams_per_user:
            raise ApiError(
                429,
                "TOO_MANY_STREAMS",
                f"At most {self.settings.sse_max_streams_per_user} order event streams at once.",
                headers={"Retry-After": str(STREAMS_RETRY_AFTER_SECONDS)},
            )
        if self._count >= self.settings.sse_max_streams:
            raise ApiError(
                503,
                "STREAMS_UNAVAILABLE",
                "Too many order event streams are open; try again later.",
                headers={"Retry-After": str(STREAMS_RETRY_AFTER_SECONDS)},
            )
        lifetime = self.settings.sse_max_lifetime_seconds
        if token_expiry is not None:
            lifetime = min(lifetime, max(0.0, token_expiry - time.time()))
        stream = Stream(order_id, user_id, session_id, token, time.monotonic() + lifetime)
        self._by_order.setdefault(order_id, set()).add(stream)
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        self._count += 1
        return stream

    def close(self, stream: Stream) -> None:
        streams = self._by_order.get(stream.order_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        if not streams:
            del self._by_order[stream.order_id]
        self._per_user[stream.user_id] -= 1
        if not self._per_user[stream.user_id]:
            del self._per_user[stream.user_id]
        self._count -= 1

    def nudge(self, order_id: str) -> None:
        """The order changed: read it now rather than at the next poll."""
        if order_id in self._by_order:
            self._nudged.add(order_id)
            self._wake.set()

    def session_revoked(self, session_id: str) -> None:
        for streams in self._by_order.values():
            for stream in streams:
                if stream.session_id == session_id:
                    stream.end("UNAUTHENTICATED")

    def _end_revoked_and_expired(self) -> None:
        now = time.monotonic()
        for streams in self._by_order.values():
            for stream in streams:
                if stream.session_id in self.revoked:
                    stream.end("UNAUTHENTICATED")
                elif now >= stream.deadline:
                    stream.end()

    async def _read(self, order_id: str, limit: asyncio.Semaphore) -> None:
        """One GetOrder for every stream on the order, with the token of one of them."""
        live = [s for s in self._by_order.get(order_id, ()) if not s.ended]
        if not live:
            return
        reader = live[0]
        async with limit:
            try:
                response = await self.clients.orders.GetOrder(
                    orders_pb2.GetOrderRequest(order_id=order_id), metadata=reader.metadata, timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    reader.end(decode_rpc_error(exc).code)  # that stream's credential no longer reads it
                return  # a transient failure: the next pass reads again
        for stream in live:
            if not stream.ended:
                stream.queue.put_nowait(response.order)

    async def pass_once(self, order_ids: list[str] | None = None) -> None:
        self._end_revoked_and_expired()
        targets = list(self._by_order) if order_ids is None else [o for o in order_ids if o in self._by_order]
        limit = asyncio.Semaphore(READ_CONCURRENCY)
        await asyncio.gather(*(self._read(order_id, limit) for order_id in targets))

    async def run_forever(self) -> None:
        period = self.settings.sse_poll_seconds
        next_full = time.monotonic() + period
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - time.monotonic()))
            self._wake.clear()
            try:
                if time.monotonic() >= next_full:
                    self._nudged.clear()
                    next_full = time.monotonic() + period
                    await self.pass_once()
                else:
                    nudged, self._nudged = list(self._nudged), set()
                    await self.pass_once(nudged)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway.order_streams_pass_failed")

    def end_all(self) -> None:
        for streams in self._by_order.values():
            for stream in streams:
                stream.end()
