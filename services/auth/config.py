"""Settings of the auth service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    database_url: str = "sqlite:///var/auth.db"
    grpc_address: str = "127.0.0.1:50051"
