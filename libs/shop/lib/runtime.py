"""What every service's `server.py` and `__main__.py` share: token verification against auth,
the migrate/serve command line, and process setup."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shop.auth.v1 import auth_pb2
from shop.lib.clients import ServiceClients
from shop.lib.db import to_timestamp
from shop.lib.logging import configure_logging
from shop.lib.migrations import upgrade
from shop.lib.server import ServiceDefinition, ShopServer
from shop.lib.settings import BaseShopSettings, ServiceSettings
from shop.lib.tokens import AccessTokenVerifier, KeySet, RevokedSessions


def remote_token_verifier(
    settings: BaseShopSettings, clients: ServiceClients
) -> tuple[AccessTokenVerifier, Callable[[], Coroutine[Any, Any, None]]]:
    """A verifier that trusts auth's JWKS and learns revocations by polling auth.
    Returns the verifier and the polling loop to run in the background."""

    async def fetch_jwks() -> str:
        response = await clients.auth.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return response.jwks_json

    async def fetch_revocations(since: datetime) -> tuple[list[str], datetime]:
        request = auth_pb2.ListRevocationsRequest(since=to_timestamp(since))
        response = await clients.auth.ListRevocations(request, timeout=5)
        return [s.session_id for s in response.sessions], response.as_of.ToDatetime(tzinfo=UTC)

    revoked = RevokedSessions(max_staleness=settings.revocation_max_staleness_seconds)
    verifier = AccessTokenVerifier(
        KeySet(fetch_jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience, revoked=revoked
    )

    async def poll() -> None:
        await revoked.poll_forever(fetch_revocations, settings.revocation_poll_seconds)

    return verifier, poll


def token_checking_server(
    name: str,
    settings: ServiceSettings,
    runtime: Any,
    servicer: tuple[Callable[[Any, Any], None], Any, str],
    *,
    migrations_dir: Path,
    on_start: Iterable[Callable[[], Awaitable[None]]] = (),
    on_stop: Iterable[Callable[[], Awaitable[None]]] = (),
    background: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> ShopServer:
    """The server of a service that checks auth's access tokens itself (every service but auth):
    `runtime` holds its `db` and `clients`. The revocation poll runs first in the background; at
    stop the clients close, then `on_stop` runs, then the database is disposed."""
    verifier, poll_revocations = remote_token_verifier(settings, runtime.clients)
    definition = ServiceDefinition(
        migrations_dir=migrations_dir,
        runtime=runtime,
        database=runtime.db,
        name=name,
        servicers=[servicer],
        verifier=verifier,
        on_start=list(on_start),
        on_stop=[runtime.clients.close, *on_stop, runtime.db.dispose],
        background=[poll_revocations, *background],
    )
    return ShopServer(definition, settings)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not on Windows
        return
    uvloop.install()


_Settings = TypeVar("_Settings", bound=ServiceSettings)


def run_service(
    name: str,
    settings: _Settings,
    build: Callable[[_Settings], ShopServer],
    migrations_dir: Path,
    argv: list[str] | None = None,
) -> None:
    """`python -m services.<name>` serves; `python -m services.<name> migrate` only migrates."""
    argv = sys.argv[1:] if argv is None else argv
    configure_logging(name, settings.log_level)
    if argv[:1] == ["migrate"]:
        upgrade(migrations_dir, settings.database_url)
        return
    if argv:
        raise SystemExit(f"usage: python -m services.{name} [migrate]")
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    install_uvloop()
    asyncio.run(build(settings).serve_until_signal())
