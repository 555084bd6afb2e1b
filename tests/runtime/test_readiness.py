"""Readiness follows the database: a service whose database stops answering turns NOT_SERVING
(so load balancers and the gateway route around it) and SERVING again once it answers.

The service reaches PostgreSQL through a TCP relay the test owns; cutting the relay (listener
closed, open connections reset) is the "database unreachable" fault."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import Suite, free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Relay:
    """A TCP relay 127.0.0.1:<port> → PostgreSQL that can be cut and restored on the same port."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


async def status_becomes(stub, wanted, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        if response.status == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never became {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)}")


async def test_service_is_not_serving_while_its_database_is_unreachable(databases):
    suite = Suite(databases)
    direct = urlsplit(databases.create("cart"))
    relay = Relay(free_port(), (direct.hostname or "127.0.0.1", direct.port or 5432))
    await relay.open()
    netloc = direct.netloc.rsplit("@", 1)
    through_relay = netloc[0] + "@" if len(netloc) == 2 else ""
    suite.database_urls["cart"] = urlunsplit(direct._replace(netloc=f"{through_relay}127.0.0.1:{relay.port}"))
    server = await suite.start_service("cart", readiness_probe_seconds=0.2)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await status_becomes(health, SERVING, timeout=5)

            await relay.cut()
            await status_becomes(health, NOT_SERVING, timeout=5)

            await relay.open()
            await status_becomes(health, SERVING, timeout=5)
    finally:
        await server.stop(grace=0.5)
        with contextlib.suppress(Exception):
            await relay.cut()


async def test_production_serves_no_reflection_and_development_does(databases):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    suite = Suite(databases)
    suite.database_urls["cart"] = databases.create("cart")
    strong = {"env": "production", "page_token_secret": "p" * 40}  # the suite gives cart its identity
    for overrides, reflected in (({}, True), (strong, False)):
        server = await suite.start_service("cart", run_migrations=True, **overrides)
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                # types-grpcio-reflection types this stub for a sync channel only, and its
                # ServerReflectionInfo as binascii.Incomplete (an exception class)
                stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                try:
                    responses = [response async for response in stub.ServerReflectionInfo(iter([request]), timeout=5)]
                    names = [s.name for s in responses[0].list_services_response.service]
                    assert reflected and "shop.cart.v1.CartService" in names
                except grpc.aio.AioRpcError as exc:
                    assert not reflected and exc.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(grace=0.5)
