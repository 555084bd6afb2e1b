"""Gateway settings (SHOP_* environment variables)."""

from __future__ import annotations

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
    # Comma-separated IPs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    max_body_bytes: int = MAX_BODY_BYTES
    # Seconds the gateway waits for each backend's health answer on /readyz.
    readiness_timeout_seconds: float = 2.0

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def trusted_proxy_set(self) -> set[str]:
        return {ip.strip() for ip in self.trusted_proxies.split(",") if ip.strip()}
