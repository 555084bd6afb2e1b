"""Settings of the catalog service (SHOP_* environment variables)."""

from __future__ import annotations

from pydantic import Field

from shop.lib.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    database_url: str = "sqlite:///var/catalog.db"
    grpc_address: str = "127.0.0.1:50052"
    # A reservation not committed within this many seconds is released by the sweep.
    reservation_ttl_seconds: float = Field(default=900.0, gt=0)
    # How often the sweep looks for expired reservations.
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    # Insert the demo catalog at start (idempotent by SKU and slug).
    seed_demo_data: bool = False
