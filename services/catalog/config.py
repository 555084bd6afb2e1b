"""Settings of the catalog service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    database_url: str = "sqlite:///var/catalog.db"
    grpc_address: str = "127.0.0.1:50052"
