"""Settings of the orders service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    database_url: str = "sqlite:///var/orders.db"
    grpc_address: str = "127.0.0.1:50054"
