"""Settings of the orders service (SHOP_* environment variables)."""

from __future__ import annotations

from shop.lib.mail import MailSettings
from shop.lib.settings import ServiceSettings


class OrdersSettings(ServiceSettings, MailSettings):
    database_url: str = "sqlite:///var/orders.db"
    grpc_address: str = "127.0.0.1:50054"
    # How often the recovery loop looks for unfinished checkouts (seconds).
    recovery_interval_seconds: float = 2.0
    # A checkout whose driver has not moved it for this long is taken over by the recovery loop
    # (the driver renews this lease at every step).
    stale_after_seconds: float = 15.0
    # How often the outbox relay looks for due side effects, and how long a relay owns an
    # order's outbox rows while working on them.
    outbox_interval_seconds: float = 0.5
    outbox_lock_seconds: float = 15.0
    outbox_max_backoff_seconds: float = 5.0
    outbox_max_attempts: int = 50
    # Idempotency keys are kept at least this long, then purged by a background loop.
    idempotency_ttl_seconds: float = 24 * 3600.0
    purge_interval_seconds: float = 600.0
