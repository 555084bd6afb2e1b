"""Settings of the cart service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.settings import ServiceSettings


class CartSettings(ServiceSettings):
    database_url: str = "sqlite:///var/cart.db"
    grpc_address: str = "127.0.0.1:50053"
