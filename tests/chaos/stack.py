"""The shop as six real processes for the fault campaign: auth, catalog, cart, orders, payments
and the gateway, each `python -m ...` on a free 127.0.0.1 port with its own fresh PostgreSQL
database (tests/harness.py's TestDatabases). Any service can be SIGKILLed and started again on
the same port with the same database. The payments sandbox runs with the test-only fault control
(SHOP_SANDBOX_FAULTS_DIR) so the injector can make the provider slow, unavailable or late.

Every process is its own session (process group); `stop()` kills whatever is left, and an
atexit hook does too if the test process dies without it."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import (
    ROOT,
    TEST_PAGE_TOKEN_SECRET,
    TestDatabases,
    free_port,
    generate_private_key_pem,
    identity_env,
)

SERVICES = ("auth", "catalog", "cart", "orders", "payments")
WEBHOOK_SECRET = "whsec_chaos_campaign_secret_0123456789abcdef"
ADMIN_EMAIL = "chaos-admin@example.com"
ADMIN_PASSWORD = "Chaos-Admin-Passw0rd!"
# The orders service's outgoing deadline (CreateCharge among them): a "slow" provider answers
# later than this.
ORDERS_RPC_TIMEOUT_SECONDS = 4.0

_live: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_live):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


class Stack:
    def __init__(self, databases: TestDatabases, tmp: Path) -> None:
        self.databases = databases
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.faults_dir = tmp / "sandbox-faults"
        self.ports = {name: free_port() for name in SERVICES}
        self.gateway_port = free_port()
        self.urls: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.private_key = generate_private_key_pem()
        self.base_url = f"http://127.0.0.1:{self.gateway_port}"

    # -- environment -------------------------------------------------------------------------

    def common_env(self) -> dict[str, str]:
        env = {
            "SHOP_ENV": "test",
            "SHOP_PAGE_TOKEN_SECRET": TEST_PAGE_TOKEN_SECRET,
            "SHOP_REVOCATION_POLL_SECONDS": "0.5",
            "SHOP_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        for name, port in self.ports.items():
            env[f"SHOP_{name.upper()}_TARGET"] = f"127.0.0.1:{port}"
        return env

    def env(self, name: str) -> dict[str, str]:
        env = {**self.common_env(), **identity_env(name)}
        if name == "gateway":
            env.update(
                {
                    "SHOP_HTTP_HOST": "127.0.0.1",
                    "SHOP_HTTP_PORT": str(self.gateway_port),
                    "SHOP_RATE_LIMIT_PER_MINUTE": "0",
                    "SHOP_AUTH_RATE_LIMIT_PER_MINUTE": "0",
                    "SHOP_PRODUCT_CACHE_TTL_SECONDS": "0",
                }
            )
            return env
        env.update(
            {
                "SHOP_DATABASE_URL": self.urls[name],
                "SHOP_GRPC_ADDRESS": f"127.0.0.1:{self.ports[name]}",
                "SHOP_GRACE_SECONDS": "1",
                # At most 6 connections per service: the suite's own services and other test runs
                # share the PostgreSQL server (max_connections 100).
                "SHOP_DB_POOL_SIZE": "2",
                "SHOP_DB_MAX_OVERFLOW": "4",
                "SHOP_MAIL_BACKEND": "file",
                "SHOP_MAIL_DIR": str(self.tmp / "mail"),
                "SHOP_FRONTEND_URL": "https://shop.example",
            }
        )
        if name == "auth":
            env.update(
                {
                    "SHOP_JWT_PRIVATE_KEY": self.private_key,
                    "SHOP_BCRYPT_ROUNDS": "4",
                    "SHOP_ADMIN_EMAIL": ADMIN_EMAIL,
                    "SHOP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                }
            )
        elif name == "catalog":
            env["SHOP_SWEEP_INTERVAL_SECONDS"] = "1"
        elif name == "orders":
            env.update(
                {
                    "SHOP_STALE_AFTER_SECONDS": "2",
                    "SHOP_RECOVERY_INTERVAL_SECONDS": "0.5",
                    "SHOP_OUTBOX_INTERVAL_SECONDS": "0.2",
                    "SHOP_OUTBOX_LOCK_SECONDS": "3",
                    "SHOP_RPC_TIMEOUT_SECONDS": str(ORDERS_RPC_TIMEOUT_SECONDS),
                }
            )
        elif name == "payments":
            env.update(
                {
                    "SHOP_PAYMENT_PROVIDER": "sandbox",
                    "SHOP_SANDBOX_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "SHOP_SANDBOX_FAULTS_DIR": str(self.faults_dir),
                    "SHOP_PROVIDER_BREAKER_RESET_SECONDS": "2",
                }
            )
        return env

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str) -> None:
        module = "gateway" if name == "gateway" else f"services.{name}"
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env={**os.environ, **self.env(name)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.processes[name] = process
        _live.add(process.pid)

    async def _wait_serving(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        if name == "gateway":
            async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"gateway exited ({process.returncode}); see {self.tmp / 'gateway.log'}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get("/healthz")).status_code == 200:
                            return
                    if time.monotonic() > deadline:
                        raise RuntimeError("the gateway did not answer /healthz")
                    await asyncio.sleep(0.2)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.ports[name]}")
        try:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}); see {self.tmp / (name + '.log')}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    # types-grpcio-health-checking declares HealthStub without its methods
                    reply = await health.Check(  # type: ignore[attr-defined]
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become SERVING within {timeout} s")
                await asyncio.sleep(0.2)
        finally:
            await channel.close()

    async def start(self) -> None:
        for name in SERVICES:
            self.urls[name] = self.databases.create(f"chaos_{name}")
        self.set_plan({})
        # auth first (the others fetch its JWKS), catalog before cart and orders.
        for name in ("auth", "catalog", "cart", "payments", "orders"):
            self._spawn(name)
            await self._wait_serving(name)
        self._spawn("gateway")
        await self._wait_serving("gateway")

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    async def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook, no grace, in-flight RPCs die with it."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        _live.discard(process.pid)

    async def restart(self, name: str) -> None:
        """The same port, the same database, the same fault directory."""
        if self.running(name):
            await self.kill(name)
        self._spawn(name)
        await self._wait_serving(name)

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait)
            _live.discard(process.pid)

    # -- the provider's fault plan, the databases -----------------------------------------------

    def set_plan(self, plan: dict) -> None:
        """Atomically replaces the sandbox's fault plan (the payments process re-reads it)."""
        self.faults_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.faults_dir / f"plan.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(plan))
        os.replace(tmp, self.faults_dir / "plan.json")

    def sql(self, service: str, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.urls[service], autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
