"""The gateway's read cache of public product pages (`GET /products/{id}` without a token).

What it holds: the encoded 200 answer of an ACTIVE product, the same for every anonymous caller.
What it never serves: anything to a signed-in caller (admins and sellers see drafts, and a writer
must read its own write), and nothing that cart or checkout use — they ask catalog for prices and
stock over gRPC, never through this cache.

Staleness bound: an entry lives `SHOP_PRODUCT_CACHE_TTL_SECONDS` (default 1 s) after catalog
answered. A write through this gateway (update, archive, stock adjustment, review) drops the
product's entry at once; a write through another gateway replica, or a stock change by a
checkout, shows within the TTL. Redis-backed invalidation across replicas can replace the expiry
bound when the shop gets a shared channel.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter

CACHE_REQUESTS = Counter("shop_gateway_cache_requests_total", "Gateway read-cache lookups", ["cache", "result"])


class TTLCache:
    """Keys to encoded answers (or what a route keeps with them), each kept for `ttl` seconds, at
    most `max_entries` (oldest first out)."""

    def __init__(self, name: str, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._hit = CACHE_REQUESTS.labels(name, "hit")
        self._miss = CACHE_REQUESTS.labels(name, "miss")

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self._hit.inc()
            return entry[1]
        self._miss.inc()
        return None

    def put(self, key: str, body: Any) -> None:
        if key not in self._entries and len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) >= self.max_entries:  # still full of live entries: oldest out
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (time.monotonic() + self.ttl, body)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)
