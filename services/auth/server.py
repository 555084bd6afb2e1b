"""Wiring of the auth service: database, clients, token verifier, servicer, lifecycle."""

from __future__ import annotations

from pathlib import Path

from shop.auth.v1 import auth_pb2, auth_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async
from shop.lib.runtime import remote_token_verifier
from shop.lib.server import ServiceDefinition, ShopServer

from services.auth.config import AuthSettings
from services.auth.servicer import AuthServicer

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.clients = ServiceClients(settings, "auth")


def build_server(settings: AuthSettings | None = None) -> ShopServer:
    settings = settings or AuthSettings()
    runtime = Runtime(settings)
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)

    async def migrate() -> None:
        if settings.run_migrations:
            await upgrade_async(MIGRATIONS_DIR, settings.database_url)

    definition = ServiceDefinition(
        name="auth",
        servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(runtime), SERVICE_NAME)],
        verifier=verifier,
        on_start=[migrate],
        on_stop=[runtime.clients.close, runtime.db.dispose],
        background=[poll_revocations],
    )
    return ShopServer(definition, settings)
