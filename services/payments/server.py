"""Wiring of the payments service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

from services.payments.config import PaymentsSettings
from services.payments.providers import build_provider
from services.payments.providers.breaker import CircuitBreaker
from services.payments.servicer import PaymentsServicer
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.runtime import token_checking_server
from shop.lib.server import ShopServer
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"].full_name


class Runtime:
    """Everything a use case needs, built once per process. Tests may swap `provider`: the use
    cases read it (and `breaker`) at each call."""

    def __init__(self, settings: PaymentsSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "payments")
        self.provider = build_provider(settings)
        # Every provider call goes through it (the use cases), whichever provider is configured.
        self.breaker = CircuitBreaker(
            failures=settings.provider_breaker_failures, reset_seconds=settings.provider_breaker_reset_seconds
        )


def build_server(settings: PaymentsSettings | None = None) -> ShopServer:
    settings = settings or PaymentsSettings()
    runtime = Runtime(settings)
    return token_checking_server(
        "payments",
        settings,
        runtime,
        (payments_pb2_grpc.add_PaymentsServiceServicer_to_server, PaymentsServicer(runtime), SERVICE_NAME),
        migrations_dir=MIGRATIONS_DIR,
        on_stop=[runtime.provider.aclose],
    )
