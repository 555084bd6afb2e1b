"""Wiring of the auth service: database, signing key, mailer, token verifier, the use cases
(accounts, sessions, mfa, addresses, admin), servicer, lifecycle and the background sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import structlog

from services.auth import admin, repository
from services.auth.accounts import Accounts
from services.auth.addresses import Addresses
from services.auth.config import AuthSettings
from services.auth.credentials import Credentials
from services.auth.keys import SigningKey
from services.auth.mfa import Mfa
from services.auth.servicer import AuthServicer
from services.auth.sessions import Sessions
from shop.auth.v1 import auth_pb2, auth_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.db import Database, utcnow
from shop.lib.mail import build_mailer
from shop.lib.periodic import Periodic
from shop.lib.server import ServiceDefinition, ShopServer
from shop.lib.tokens import AccessTokenVerifier, KeySet

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

log = structlog.get_logger("auth")


class Runtime:
    """Everything a handler needs, built once per process."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)
        self.clients = ServiceClients(settings, "auth")
        self.signing_key = SigningKey.from_settings(settings)
        self.mailer = build_mailer(settings)
        self._mail_tasks: set[asyncio.Task] = set()
        # The use cases, one per concern; each owns the transactions of its writes.
        self.sessions = Sessions(settings, self.db, self.signing_key)
        credentials = Credentials(settings, self.db)
        self.accounts = Accounts(
            settings, self.db, credentials=credentials, sessions=self.sessions, send_mail=self.send_mail_later
        )
        self.mfa = Mfa(settings, self.db, credentials=credentials, send_mail=self.send_mail_later)
        self.addresses = Addresses(self.db)
        self.admin = admin.Admin(settings, self.db)
        # The auth service verifies access tokens with its own key and asks its own database whether
        # the session is still live, so logout and suspension take effect at once for its RPCs.
        self.verifier = AccessTokenVerifier(
            KeySet.static(self.signing_key.jwks_json()),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            session_check=self.session_is_live,
        )

    async def session_is_live(self, session_id: str, user_id: str) -> bool:
        async with self.db.session() as session:
            return await repository.session_is_active(session, session_id, user_id, utcnow())

    def send_mail_later(self, to: str, subject: str, body: str) -> None:
        """Sends in the background: a slow or failing mail server never fails (or times) a request."""

        async def send() -> None:
            try:
                await self.mailer.send(to, subject, body)
            except Exception as exc:  # logged, never raised into a request
                log.warning("mail.failed", subject=subject, error=type(exc).__name__)

        task = asyncio.create_task(send())
        self._mail_tasks.add(task)
        task.add_done_callback(self._mail_tasks.discard)

    async def drain_mail(self) -> None:
        if self._mail_tasks:
            await asyncio.wait(list(self._mail_tasks), timeout=10)

    async def sweep_once(self) -> int:
        now = utcnow()
        async with self.db.transaction() as session:
            return await repository.delete_stale_rows(
                session,
                attempts_before=now - timedelta(seconds=self.settings.login_window_seconds),
                tokens_before=now - timedelta(days=1),
            )

    async def sweep_forever(self, interval: float = 300.0) -> None:
        """Deletes login attempts outside the lockout window and one-time tokens expired over a day."""
        await Periodic("sweep", self.sweep_once, interval)()

    async def bootstrap_admin(self) -> None:
        await admin.bootstrap_admin(self.settings, self.db)


def build_server(settings: AuthSettings | None = None) -> ShopServer:
    settings = settings or AuthSettings()
    runtime = Runtime(settings)

    definition = ServiceDefinition(
        migrations_dir=MIGRATIONS_DIR,
        runtime=runtime,
        database=runtime.db,
        name="auth",
        servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(runtime), SERVICE_NAME)],
        verifier=runtime.verifier,
        on_start=[runtime.bootstrap_admin],
        on_stop=[runtime.drain_mail, runtime.clients.close, runtime.db.dispose],
        background=[runtime.sweep_forever],
    )
    return ShopServer(definition, settings)
