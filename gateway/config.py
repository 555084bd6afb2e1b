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
    # Requests per minute per client IP; 0 turns a limit off (benchmarks).
    rate_limit_per_minute: int = 1200
    auth_rate_limit_per_minute: int = 30
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
