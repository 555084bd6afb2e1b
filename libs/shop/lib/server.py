"""The `grpc.aio` server every service runs: health, reflection, interceptors, graceful shutdown.

Lifecycle: listen with health NOT_SERVING → run start hooks (migrations, connections) → freeze the
start-up heap out of the garbage collector's scans → SERVING.
While running: the database is probed every few seconds; NOT_SERVING while it does not answer
(load balancers and the gateway route around this replica), SERVING again when it does.
On SIGTERM/SIGINT: NOT_SERVING at once → `stop(grace)` lets in-flight RPCs finish → stop hooks.
gRPC reflection is served outside production only (it lists every RPC to whoever asks).
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from shop.lib import tracing
from shop.lib.clients import READ_PREFIXES
from shop.lib.context import Caller, caller_var, deadline_var, new_request_id, request_id_var
from shop.lib.db import Database
from shop.lib.errors import ShopError, decode_rpc_error, to_grpc_status
from shop.lib.migrations import upgrade_async
from shop.lib.periodic import Periodic
from shop.lib.settings import ServiceSettings
from shop.lib.tokens import SERVICE_METADATA_KEY, AccessTokenVerifier, ServiceKeys

log = structlog.get_logger("shop.server")

RPC_REQUESTS = Counter("shop_rpc_requests_total", "RPCs handled", ["service", "method", "code"])
RPC_LATENCY = Histogram("shop_rpc_duration_seconds", "RPC handling time", ["service", "method"])
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def freeze_startup_heap() -> None:
    """Moves every object alive after start-up (modules, ORM mappings, protobuf descriptors) out
    of the garbage collector's reach: full collections then scan only what requests allocate,
    which shortens the pauses behind tail latency and saves their CPU."""
    gc.collect()
    gc.freeze()


def bearer_token(metadata: dict[str, str]) -> str | None:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class ShopInterceptor(grpc.aio.ServerInterceptor):
    """Request id, caller identity, logging, metrics and exception → status, once for every RPC."""

    def __init__(self, service: str, verifier: AccessTokenVerifier | None, service_keys: ServiceKeys) -> None:
        self.service = service
        self.verifier = verifier
        self.service_keys = service_keys
        # grpc.aio asks for the handler on every call; each method's wrapper is built once.
        self._wrapped: dict[str, Any] = {}

    async def identify(self, metadata: dict[str, str], method: str = "") -> Caller:
        """The caller; `method` (the RPC's short name) tells a read from a write."""
        service_name = None
        if SERVICE_METADATA_KEY in metadata:
            service_name = self.service_keys.verify(metadata[SERVICE_METADATA_KEY])
        caller = Caller(service=service_name)
        if "authorization" in metadata:
            token = bearer_token(metadata)
            if token is None or self.verifier is None:
                from shop.lib.errors import Unauthenticated

                raise Unauthenticated("The authorization header is malformed.")
            user = await self.verifier.verify(token, write=not method.startswith(READ_PREFIXES))
            caller = Caller(
                user_id=user.user_id,
                role=user.role,
                session_id=user.session_id,
                token_id=user.token_id,
                service=service_name,
                claims=user.claims,
            )
        return caller

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> None:
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        request_id = metadata.get("x-request-id", "")
        if not _REQUEST_ID_PATTERN.match(request_id):
            request_id = new_request_id()
        request_id_var.set(request_id)
        remaining = context.time_remaining()
        deadline_var.set(time.monotonic() + remaining if remaining is not None else None)
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
        caller_var.set(await self.identify(metadata, method))

    def _status_for(self, exc: BaseException) -> tuple[grpc.StatusCode, Any]:
        if isinstance(exc, ShopError):
            return exc.grpc_code, to_grpc_status(exc)
        if isinstance(exc, grpc.aio.AioRpcError):
            # A downstream service's error travels on unchanged (its code and reason).
            error = decode_rpc_error(exc).to_shop_error()
            return error.grpc_code, to_grpc_status(error)
        if isinstance(exc, NotImplementedError):
            error = ShopError("This operation is not implemented yet.", code="NOT_IMPLEMENTED")
            error.grpc_code = grpc.StatusCode.UNIMPLEMENTED
            return error.grpc_code, to_grpc_status(error)
        log.exception("rpc.unhandled_error", exc_info=exc)
        error = ShopError("Internal error.")
        return error.grpc_code, to_grpc_status(error)

    def _finish(self, method: str, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        RPC_REQUESTS.labels(self.service, method, code.name).inc()
        RPC_LATENCY.labels(self.service, method).observe(elapsed)
        level = "info" if code in (grpc.StatusCode.OK,) else "warning"
        getattr(log, level)("rpc", code=code.name, duration_ms=round(elapsed * 1000, 2))
        structlog.contextvars.unbind_contextvars("request_id", "rpc")

    async def _end(self, method: str, started: float, failure: tuple[grpc.StatusCode, Any] | None, context) -> bool:
        """An RPC's end, counted and logged: True when it succeeded, else its failure becomes the
        RPC's status (the abort raises)."""
        if failure is None:
            self._finish(method, grpc.StatusCode.OK, started)
            return True
        self._finish(method, failure[0], started)
        await context.abort_with_status(failure[1])
        return False

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith("/grpc."):
            return handler
        wrapped = self._wrap(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, short_method: str, handler):

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                started = time.perf_counter()
                failure = None
                try:
                    await self._enter(short_method, context)
                    response = await inner(request, context)
                except asyncio.CancelledError:
                    self._finish(short_method, grpc.StatusCode.CANCELLED, started)
                    raise
                except Exception as exc:
                    failure = self._status_for(exc)
                if await self._end(short_method, started, failure, context):
                    return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def unary_stream(request, context):
                started = time.perf_counter()
                failure = None
                try:
                    await self._enter(short_method, context)
                    async for item in inner_stream(request, context):
                        yield item
                except asyncio.CancelledError:
                    self._finish(short_method, grpc.StatusCode.CANCELLED, started)
                    raise
                except Exception as exc:
                    failure = self._status_for(exc)
                await self._end(short_method, started, failure, context)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


@dataclass
class ServiceDefinition:
    """What a service hands to the bootstrap: its servicers and its lifecycle hooks."""

    name: str
    # (add_XServicer_to_server function, servicer instance, full service name)
    servicers: list[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]]
    verifier: AccessTokenVerifier | None
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Long-running loops (sweeps, outbox relays, revocation polling) started once ready.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # The service's Alembic directory: migrated to head at start (before on_start) unless
    # SHOP_RUN_MIGRATIONS=false.
    migrations_dir: Path | None = None
    # The service's runtime object (database, clients, …), reachable by tests as server.runtime.
    runtime: Any = None
    # The database readiness follows (None: the process is ready once started).
    database: Database | None = None


class ShopServer:
    def __init__(self, definition: ServiceDefinition, settings: ServiceSettings) -> None:
        self.definition = definition
        self.settings = settings
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        self._database_up = True

    @property
    def runtime(self) -> Any:
        return self.definition.runtime

    @property
    def address(self) -> str:
        host = self.settings.grpc_address.rsplit(":", 1)[0]
        if host in ("0.0.0.0", "[::]", ""):  # nosec B104  # compares with the bind-all address to dial loopback; binds nothing
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def _set_health(self, status: int) -> None:  # a HealthCheckResponse.ServingStatus value
        for name in ["", *(full_name for _, _, full_name in self.definition.servicers)]:
            await self.health.set(name, status)

    async def start(self) -> None:
        settings = self.settings
        interceptor = ShopInterceptor(
            self.definition.name,
            self.definition.verifier,
            ServiceKeys.from_settings(settings),
        )
        server = grpc.aio.server(
            # tracing first, so the span covers identity checks and error mapping too
            interceptors=[*tracing.server_interceptors(self.definition.name, settings.otlp_endpoint), interceptor],
            options=[
                ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
                ("grpc.max_connection_age_grace_ms", settings.max_connection_age_grace_ms),
                # Two processes must never share a port silently (replicas get their own).
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        for add, servicer, full_name in self.definition.servicers:
            add(servicer, server)
            names.append(full_name)
        if not settings.is_production:
            reflection.enable_server_reflection(names, server)
        self.port = server.add_insecure_port(settings.grpc_address)
        if not self.port:
            raise RuntimeError(f"could not bind {settings.grpc_address}")
        self._server = server
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        if self.definition.migrations_dir is not None and settings.run_migrations:
            await upgrade_async(self.definition.migrations_dir, settings.database_url)
        for hook in self.definition.on_start:
            await hook()
        for loop_factory in self.definition.background:
            self._tasks.append(asyncio.create_task(loop_factory()))
        if self.definition.database is not None:
            self._tasks.append(asyncio.create_task(self._follow_database(self.definition.database)))
        freeze_startup_heap()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("server.started", address=self.address, pid=os.getpid())

    async def _follow_database(self, database: Database) -> None:
        """Readiness follows the database: NOT_SERVING while it does not answer, SERVING again
        once it does (unless the server is stopping, which keeps NOT_SERVING)."""
        interval = self.settings.readiness_probe_seconds

        async def probe() -> None:
            up = await database.ping(timeout=interval)
            if up == self._database_up or self._stopped.is_set():
                return
            self._database_up = up
            if up:
                log.info("readiness.database_back")
                await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            else:
                log.warning("readiness.database_unreachable")
                await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

        await Periodic("readiness.database", probe, interval, jitter=0)()

    async def stop(self, grace: float | None = None) -> None:
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        # NOT_SERVING first, so load balancers stop sending new work while in-flight RPCs finish.
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.settings.grace_seconds if grace is None else grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for hook in self.definition.on_stop:
            await hook()
        await asyncio.to_thread(tracing.flush, self.definition.name, self.settings.otlp_endpoint)
        log.info("server.stopped")

    async def serve_until_signal(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in signals:
            loop.add_signal_handler(signum, stop_requested.set)
        await self.start()
        await stop_requested.wait()
        log.info("server.stopping", grace_seconds=self.settings.grace_seconds)
        await self.stop()


def crash_point(settings: ServiceSettings, step: str) -> None:
    """Testing only: exit abruptly at a named step when SHOP_CRASH_AT names it."""
    if settings.crash_at and settings.crash_at == step:
        log.warning("crash_point", step=step)
        os._exit(86)
