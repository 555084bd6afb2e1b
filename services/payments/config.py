"""Settings of the payments service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    database_url: str = "sqlite:///var/payments.db"
    grpc_address: str = "127.0.0.1:50055"
