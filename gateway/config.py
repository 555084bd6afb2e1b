"""Gateway settings (SHOP_* environment variables)."""

from __future__ import annotations

import ipaddress
from functools import cached_property

from pydantic import Field

from shop.lib.settings import BaseShopSettings

MAX_BODY_BYTES = 1024 * 1024


class GatewaySettings(BaseShopSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Comma-separated allow-list of browser origins.
    cors_origins: str = "http://localhost:5173,http://localhost:3000"
    # Prometheus metrics on this port (its own listener, never the public one); 0: not served.
    metrics_port: int = 0
    # Requests per minute per client IP (a moving window); 0 turns a limit off (benchmarks).
    rate_limit_per_minute: int = 1200
    auth_rate_limit_per_minute: int = 30
    # Redis shared by every gateway replica: rate-limit windows, the revoked-session set, order
    # stream nudges. Empty: all of it in this process's memory (the local run). While Redis does
    # not answer, limits count per process (a logged warning), never not at all.
    redis_url: str = ""
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    # Comma-separated IPs or CIDR ranges (e.g. a pod network) of reverse proxies whose
    # X-Forwarded-For is believed.
    trusted_proxies: str = ""
    max_body_bytes: int = MAX_BODY_BYTES
    # Seconds the gateway waits for each backend's health answer on /readyz.
    readiness_timeout_seconds: float = 2.0
    # Public product reads (`GET /products/{id}` without a token) are answered from memory for
    # at most this long after catalog served them; 0 turns the cache off. Writes through this
    # gateway drop the entry at once (see gateway/cache.py for the staleness bound).
    product_cache_ttl_seconds: float = Field(default=1.0, ge=0, le=60)
    product_cache_max_entries: int = Field(default=10_000, ge=1)
    # Order event streams (SSE): open at most this many per user and per gateway process, each for
    # at most this long (and never past its access token's expiry); one poller per gateway reads
    # the watched orders this often (see gateway/streams.py).
    sse_max_streams_per_user: int = Field(default=5, ge=1)
    sse_max_streams: int = Field(default=1000, ge=1)
    sse_max_lifetime_seconds: float = Field(default=900.0, gt=0, le=3600)
    sse_poll_seconds: float = Field(default=2.0, gt=0, le=60)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        entries = [entry.strip() for entry in self.trusted_proxies.split(",") if entry.strip()]
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)

    def is_trusted_proxy(self, address: str) -> bool:
        if not self.trusted_proxy_networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxy_networks)
