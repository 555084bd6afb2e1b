"""What routes depend on: the shared state (gRPC clients, token verifier), the caller, and small
helpers to call services and shape responses. Routes stay thin: parse, call, map."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from fastapi import Depends, Request

from gateway.cache import TTLCache
from gateway.caller import bearer_token
from gateway.caller import client_ip as scope_client_ip
from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.ratelimit import SharedLimiter
from gateway.schemas.common import ApiModel, rfc3339  # noqa: F401 - kept importable from here
from gateway.shared import SharedState
from gateway.streams import OrderStreams
from shop.lib.clients import ServiceClients
from shop.lib.context import Caller
from shop.lib.errors import ShopError, Unavailable
from shop.lib.runtime import remote_token_verifier


class GatewayState:
    """Built once per gateway process: one long-lived channel per service, the token verifier, the
    rate limiter, the Redis link shared with the other replicas and the order stream hub."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.clients = ServiceClients(settings, "gateway")
        self.product_cache = TTLCache("product", settings.product_cache_ttl_seconds, settings.product_cache_max_entries)
        self.verifier, self._poll = remote_token_verifier(settings, self.clients)
        self.limiter = SharedLimiter(settings.redis_url, settings.redis_timeout_seconds)
        self.shared = SharedState(settings.redis_url, settings.redis_timeout_seconds, self.verifier.revoked)
        self.streams = OrderStreams(settings, self.clients, self.verifier.revoked)
        self.shared.on_revoked(self.streams.session_revoked)
        self.shared.on_order_changed(self.streams.nudge)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll()))
        self._tasks.append(asyncio.create_task(self.shared.listen_forever()))
        self._tasks.append(asyncio.create_task(self.streams.run_forever()))

    async def stop(self) -> None:
        self.streams.end_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.shared.close()
        await self.clients.close()

    async def revoke(self, *session_ids: str) -> None:
        """Sessions this gateway ended: refused here at once, by every replica within ~milliseconds."""
        await self.shared.revoke(session_ids)


async def get_state(request: Request) -> GatewayState:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request
    return request.app.state.gateway


@dataclass(frozen=True)
class Principal:
    """A verified user and the token to forward: services check it again themselves."""

    caller: Caller
    token: str

    @property
    def user_id(self) -> str:
        return self.caller.user_id or ""

    @property
    def role(self) -> str | None:
        return self.caller.role

    @property
    def is_admin(self) -> bool:
        return self.caller.is_admin

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]


async def optional_user(request: Request, state: GatewayState = Depends(get_state)) -> Principal | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    token = bearer_token(value)
    if token is None:
        raise ApiError(401, "UNAUTHENTICATED", "The Authorization header must be 'Bearer <token>'.")
    try:
        caller = await state.verifier.verify(token, write=request.method not in ("GET", "HEAD", "OPTIONS"))
    except Unavailable as exc:  # revocations stale: writes wait until auth answers again
        raise ApiError(503, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after or 2)}) from None
    except ShopError as exc:
        raise ApiError(401, "UNAUTHENTICATED", exc.message) from None
    return Principal(caller=caller, token=token)


async def current_user(principal: Principal | None = Depends(optional_user)) -> Principal:
    if principal is None:
        raise ApiError(401, "UNAUTHENTICATED", "Authentication required.")
    return principal


def require_roles(*roles: str):
    async def dependency(principal: Principal = Depends(current_user)) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, "FORBIDDEN", "You do not have permission to do this.")
        return principal

    return dependency


require_admin = require_roles("ADMIN")


def user_metadata(principal: Principal | None) -> list[tuple[str, str]]:
    return principal.metadata if principal is not None else []


def client_ip(request: Request) -> str:
    """What RequestContextMiddleware worked out (gateway/caller.py), the one rule for every use."""
    ip = getattr(request.state, "client_ip", None)
    return ip if ip is not None else scope_client_ip(request.scope, request.app.state.gateway.settings.is_trusted_proxy)


def is_https(request: Request) -> bool:
    https = getattr(request.state, "https", None)
    return https if https is not None else request.url.scheme == "https"
