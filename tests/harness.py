"""Test harness: real PostgreSQL databases, real gRPC servers on free ports, the real gateway.

`Suite` starts the five services and the gateway (uvicorn on a free port) in the test process's
event loop, each service with its own freshly created PostgreSQL database. Tests talk to the
gateway over HTTP (`suite.http`) or to a service directly (`suite.stub("catalog")`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
from psycopg import sql

from shop.lib.clients import ServiceClients, make_channel
from shop.lib.context import INTERNAL_CALLERS
from shop.lib.settings import BaseShopSettings, ServiceSettings
from shop.lib.tokens import SERVICE_METADATA_KEY, ServiceIdentity, generate_private_key_pem, public_keys_json

# testcontainers (a dependency of the project: the PostgreSQL fallback below, and anything in
# tests/containers) reads these when it is imported; set here, at the import of this module (the
# root conftest.py imports it, so every pytest session of the repository has them) and before
# anything imports testcontainers. On a machine with /.dockerenv it would otherwise take a gateway
# address as its host (the connection mode it picks inside a container, TC_HOST or not: hence
# docker_host, which then means TC_HOST and the published ports), and its reaper (Ryuk) image
# cannot be pulled here: whoever starts a container removes it (the fallback: at exit).
TESTCONTAINERS_ENV = {
    "TC_HOST": "127.0.0.1",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_RYUK_DISABLED": "true",
}
for _name, _value in TESTCONTAINERS_ENV.items():
    os.environ.setdefault(_name, _value)

SERVICE_NAMES = ("auth", "catalog", "cart", "orders", "payments")
# Everything that has a service identity: the five services and the gateway.
IDENTITY_NAMES = ("gateway", *SERVICE_NAMES)
TEST_PAGE_TOKEN_SECRET = "test-page-token-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent

# One key pair per identity, made fresh for each test session (never written anywhere).
TEST_SERVICE_KEYS = {name: generate_private_key_pem() for name in IDENTITY_NAMES}
TEST_SERVICE_PUBLIC_KEYS = public_keys_json(TEST_SERVICE_KEYS)


def identity_settings(name: str) -> dict[str, Any]:
    """The settings that make a process `name` (its own key and everyone's public keys), as keyword
    arguments of a settings class (each of whose fields has a type of its own)."""
    return {"service_key": TEST_SERVICE_KEYS[name], "service_public_keys": TEST_SERVICE_PUBLIC_KEYS}


def identity_env(name: str) -> dict[str, str]:
    """The same as environment variables, for a process started with `run_process`."""
    return {f"SHOP_{key.upper()}": value for key, value in identity_settings(name).items()}


def service_identity(name: str) -> ServiceIdentity:
    """Mints `name`'s tokens (for a channel made with `make_channel(..., service_tokens=...)`)."""
    return ServiceIdentity.from_pem(name, TEST_SERVICE_KEYS[name])


def default_caller(service: str, method: str) -> str:
    """Who calls `service.method` in the shop: the first caller an internal RPC names, else the
    gateway (the public edge, which calls every user-facing RPC)."""
    return INTERNAL_CALLERS.get(f"{service}.{method}", ("gateway",))[0]


class _ActAsCaller(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives each call the identity of the service that really makes it (`default_caller`)."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._identities: dict[str, ServiceIdentity] = {}

    async def intercept_unary_unary(self, continuation, details, request):
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        name = default_caller(self._service, method.rsplit("/", 1)[-1])
        if name not in self._identities:
            self._identities[name] = service_identity(name)
        metadata = grpc.aio.Metadata(*(details.metadata or ()), (SERVICE_METADATA_KEY, self._identities[name].mint()))
        return await continuation(
            grpc.aio.ClientCallDetails(
                method=details.method,
                timeout=details.timeout,
                metadata=metadata,
                credentials=details.credentials,
                wait_for_ready=details.wait_for_ready,
            ),
            request,
        )


def acting_channel(target: str, service: str) -> grpc.aio.Channel:
    """A channel to `service` whose every call carries its real caller's identity (orders' for
    CreateCharge, the gateway's for HandleWebhook and the user-facing RPCs)."""
    return make_channel(target, service, service_tokens=None, tracing=[_ActAsCaller(service)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def _server_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


_container = None
# The image of the fallback: the one docker-compose.yml runs, so the one
# deploy/offline/make-base-images.sh makes where no registry is reachable.
POSTGRES_FALLBACK_IMAGE = "postgres:16-alpine"


def postgres_admin_url() -> str:
    """SHOP_TEST_DATABASE_URL; else 127.0.0.1:5432; else a testcontainers PostgreSQL when Docker runs
    (removed at exit). Under CI=true a missing PostgreSQL is a failure, never a skip."""
    global _container
    url = os.environ.get("SHOP_TEST_DATABASE_URL")
    if url:
        return url
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _server_answers(local):
        return local
    if _container is None and shutil.which("docker"):
        with contextlib.suppress(Exception):
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer(POSTGRES_FALLBACK_IMAGE, driver=None)
            try:
                container.start()
            except Exception:
                with contextlib.suppress(Exception):
                    container.stop()  # no reaper removes what did not start
                raise
            _container = container
            atexit.register(container.stop)
    if _container is not None:
        return _container.get_connection_url()
    message = "no PostgreSQL for the tests: set SHOP_TEST_DATABASE_URL or run one on 127.0.0.1:5432"
    if os.environ.get("CI") == "true":
        raise RuntimeError(message)
    import pytest

    pytest.skip(message)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Redis (what gateway replicas share: rate limits, revoked sessions, order stream nudges)
# ---------------------------------------------------------------------------------------------


def redis_test_url() -> str:
    """SHOP_TEST_REDIS_URL; else the server on 127.0.0.1:6379 when it answers. Under CI=true a
    missing Redis is a failure, never a skip (like PostgreSQL above)."""
    url = os.environ.get("SHOP_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        with socket.create_connection(
            ("127.0.0.1", 6379) if "SHOP_TEST_REDIS_URL" not in os.environ else _redis_address(url), timeout=2
        ) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return url
    except OSError:
        pass
    message = "no Redis for the tests: set SHOP_TEST_REDIS_URL or run one on 127.0.0.1:6379"
    if os.environ.get("CI") == "true":
        raise RuntimeError(message)
    import pytest

    pytest.skip(message)
    raise AssertionError("unreachable")


def _redis_address(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass
class TestDatabases:
    admin_url: str
    created: list[str] = field(default_factory=list)

    def create(self, label: str) -> str:
        name = f"shop_test_{label}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return _with_database(self.admin_url, name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.clear()


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.config")
    return next(
        value
        for name, value in vars(module).items()
        if name.endswith("Settings")
        and isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    )


class Suite:
    """The five services and the gateway, started for real on free ports."""

    def __init__(self, databases: TestDatabases, *, extra: dict[str, dict[str, Any]] | None = None) -> None:
        self.databases = databases
        self.extra = extra or {}
        self.ports = {name: free_port() for name in SERVICE_NAMES}
        self.gateway_port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="shop-test-"))
        self.mail_dir = self.tmp / "mail"
        self.private_key_pem = generate_private_key_pem()
        self.servers: dict[str, Any] = {}
        self.database_urls: dict[str, str] = {}
        self._uvicorn: Any = None  # the gateway's uvicorn.Server, once started
        self._uvicorn_task: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None
        self.clients: ServiceClients | None = None
        self._clients_as: dict[str, ServiceClients] = {}

    def common(self) -> dict[str, Any]:
        targets = {f"{name}_target": f"127.0.0.1:{port}" for name, port in self.ports.items()}
        return {
            "env": "test",
            "service_public_keys": TEST_SERVICE_PUBLIC_KEYS,
            "page_token_secret": TEST_PAGE_TOKEN_SECRET,
            "revocation_poll_seconds": 0.5,
            **targets,
        }

    def service_settings(self, service: str, **overrides: Any) -> Any:
        values = {
            **self.common(),
            "database_url": self.database_urls[service],
            "grpc_address": f"127.0.0.1:{self.ports[service]}",
            "grace_seconds": 2.0,
            # Five services plus the extra processes some tests start stay well under
            # PostgreSQL's default of 100 connections.
            "db_pool_size": 3,
            "db_max_overflow": 7,
            "mail_backend": "file",
            "mail_dir": str(self.mail_dir),
            "frontend_url": "https://shop.example",
            "jwt_private_key": self.private_key_pem,
            "service_key": TEST_SERVICE_KEYS[service],
            **self.extra.get(service, {}),
            **overrides,
        }
        cls = settings_class(service)
        return cls(**{key: value for key, value in values.items() if key in cls.model_fields})

    def gateway_settings(self, **overrides: Any) -> Any:
        from gateway.config import GatewaySettings

        values = {
            **self.common(),
            "http_host": "127.0.0.1",
            "http_port": self.gateway_port,
            "rate_limit_per_minute": 0,
            "auth_rate_limit_per_minute": 0,
            # The suite reads its own writes made past the gateway (gRPC, checkouts); the read
            # cache has its own tests (gateway/tests/test_product_cache.py).
            "product_cache_ttl_seconds": 0,
            "service_key": TEST_SERVICE_KEYS["gateway"],
            **self.extra.get("gateway", {}),
            **overrides,
        }
        return GatewaySettings(**{key: value for key, value in values.items() if key in GatewaySettings.model_fields})

    async def start_service(self, service: str, **overrides: Any) -> Any:
        module = importlib.import_module(f"services.{service}.server")
        server = module.build_server(self.service_settings(service, **overrides))
        await server.start()
        self.servers[service] = server
        return server

    async def start(self) -> Suite:
        for service in SERVICE_NAMES:
            self.database_urls[service] = self.databases.create(service)
        # auth first: every other service fetches its JWKS.
        for service in SERVICE_NAMES:
            await self.start_service(service)
        await self.start_gateway()
        self.clients = self.clients_as("gateway")
        return self

    def clients_as(self, name: str) -> ServiceClients:
        """Clients that call with `name`'s service identity (one set per identity)."""
        if name not in self._clients_as:
            self._clients_as[name] = ServiceClients(
                BaseShopSettings(**{**self.common(), **identity_settings(name)}), name
            )
        return self._clients_as[name]

    async def _serve_gateway(self, port: int, **overrides: Any) -> tuple[Any, asyncio.Task]:
        import uvicorn

        from gateway.app import create_app

        app = create_app(self.gateway_settings(http_port=port, **overrides))
        # The server keeps idle connections longer than httpx's pool (5 s), so the client always
        # retires one first: never a request sent on a connection the server is closing.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_keep_alive=30
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        return server, task

    async def start_gateway(self) -> None:
        self._uvicorn, self._uvicorn_task = await self._serve_gateway(self.gateway_port)
        self.base_url = f"http://127.0.0.1:{self.gateway_port}"
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=60)

    @property
    def http(self) -> httpx.AsyncClient:
        """A client of the suite's gateway (made by start_gateway)."""
        assert self._http is not None, "the gateway is not started"
        return self._http

    @contextlib.asynccontextmanager
    async def extra_gateway(self, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        """A second gateway on the same services with other settings, and a client for it."""
        port = free_port()
        server, task = await self._serve_gateway(port, **overrides)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                yield client
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)

    def gateway_state(self) -> Any:
        """The suite's gateway's GatewayState (gateway/deps.py): its hub, limiter, revoked set."""
        return self._uvicorn.config.app.state.gateway

    def stub(self, service: str, *, as_service: str | None = None) -> Any:
        """A stub of `service` whose every method calls with the identity of the service that
        really calls it (`default_caller`), or with `as_service`'s."""
        assert self.clients is not None
        return _ActingStub(self, service, as_service)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._uvicorn is not None and self._uvicorn_task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._uvicorn_task, 10)
        for clients in self._clients_as.values():
            await clients.close()
        for server in reversed(list(self.servers.values())):
            with contextlib.suppress(Exception):
                await server.stop(grace=0.5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers shared by many tests -----------------------------------------------------------

    async def register(self, *, password: str = "Passw0rd!x", **fields: Any) -> dict[str, Any]:
        """Registers a fresh user through the gateway; returns {user, tokens, password, headers}."""
        email = fields.pop("email", f"user-{uuid.uuid4().hex[:12]}@example.com")
        body = {"email": email, "password": password, "firstName": "Test", "lastName": "User", **fields}
        response = await self.http.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        return {
            **data,
            "email": email,
            "password": password,
            "headers": {"Authorization": f"Bearer {data['tokens']['accessToken']}"},
        }

    async def admin(self) -> dict[str, Any]:
        """A fresh user promoted to ADMIN directly in the auth database, then logged in."""
        return await self.user_with_role("ADMIN")

    async def user_with_role(self, role: str) -> dict[str, Any]:
        user = await self.register()
        with psycopg.connect(self.database_urls["auth"].replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("UPDATE users SET role = %s WHERE id = %s", (role, user["user"]["id"]))
        return await self.sign_in(user)

    async def sign_in(self, user: dict[str, Any]) -> dict[str, Any]:
        """`user` (as register gives it) with fresh tokens from a login."""
        response = await self.http.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": user["password"]}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()["data"]["tokens"]
        return {**user, "tokens": tokens, "headers": {"Authorization": f"Bearer {tokens['accessToken']}"}}

    def sql(self, service: str, query: str, params: tuple = ()) -> list[tuple]:
        """Reads a service's database directly (to prove that "nothing changed")."""
        with psycopg.connect(self.database_urls[service].replace("+psycopg", "")) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


class _ActingStub:
    def __init__(self, suite: Suite, service: str, as_service: str | None) -> None:
        self._suite = suite
        self._service = service
        self._as = as_service

    def __getattr__(self, method: str) -> Any:
        name = self._as or default_caller(self._service, method)
        return getattr(self._suite.clients_as(name).stub(self._service), method)


def run_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Starts a service or gateway as its own process (crash, replica and shutdown tests)."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
