"""Client channels to the shop's services: one long-lived channel per target.

The gRPC service config does the work (no hand-written balancer or retry loop):
`round_robin` over every address of the target, a `retryPolicy` on UNAVAILABLE for reads and for
writes made safe by an idempotency key, and a retry budget (`retryThrottling`) that stops retries
while a backend keeps failing. A client interceptor gives every call a deadline (never
more than the incoming RPC has left), the request id, and this process's service identity.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from shop.auth.v1 import auth_pb2, auth_pb2_grpc
from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.context import current_request_id, time_left
from shop.lib.settings import BaseShopSettings
from shop.lib.tokens import SERVICE_METADATA_KEY, ServiceIdentity
from shop.lib.tracing import client_interceptors
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

REQUEST_ID_METADATA_KEY = "x-request-id"
# Methods safe to retry that the naming rule below misses: writes idempotent by another key,
# and checks that change nothing.
IDEMPOTENT_WRITES = {
    "shop.payments.v1.PaymentsService": {"CreateCharge", "HandleWebhook", "CheckPaymentMethod"},
    "shop.catalog.v1.CatalogService": {"RecordPurchases", "AddWishlistItem", "RemoveWishlistItem"},
    "shop.cart.v1.CartService": {"CheckoutCart", "RestoreCart"},  # idempotent by checkout_id
}
READ_PREFIXES = ("Get", "List", "BatchGet", "Watch")  # RPCs that change nothing, by name
_IDEMPOTENCY_FIELDS = ("request_id", "reservation_id")
MIN_DEADLINE_SECONDS = 0.05

SERVICES: dict[str, tuple[ServiceDescriptor, Any]] = {
    "auth": (auth_pb2.DESCRIPTOR.services_by_name["AuthService"], auth_pb2_grpc.AuthServiceStub),
    "catalog": (catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"], catalog_pb2_grpc.CatalogServiceStub),
    "cart": (cart_pb2.DESCRIPTOR.services_by_name["CartService"], cart_pb2_grpc.CartServiceStub),
    "orders": (orders_pb2.DESCRIPTOR.services_by_name["OrdersService"], orders_pb2_grpc.OrdersServiceStub),
    "payments": (
        payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"],
        payments_pb2_grpc.PaymentsServiceStub,
    ),
}


def grpc_target(target: str) -> str:
    """`127.0.0.1:50052,127.0.0.1:50062` → `ipv4:127.0.0.1:50052,127.0.0.1:50062`;
    `catalog:50051` → `dns:///catalog:50051`; a URI (`dns:///…`, `ipv4:…`, `unix:…`) is kept."""
    target = target.strip()
    if ":///" in target or target.startswith(("ipv4:", "ipv6:", "unix:", "dns:")):
        return target
    addresses = [address.strip() for address in target.split(",") if address.strip()]

    def is_ip(address: str) -> bool:
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    if addresses and all(is_ip(address) for address in addresses):
        return "ipv4:" + ",".join(addresses)
    if len(addresses) == 1:
        return f"dns:///{addresses[0]}"
    raise ValueError(f"a list of addresses must be IP addresses, got {target!r}")


def retryable_methods(service: ServiceDescriptor) -> list[str]:
    names = []
    for method in service.methods:
        fields = method.input_type.fields_by_name
        if (
            method.name.startswith(READ_PREFIXES)
            or any(name in fields for name in _IDEMPOTENCY_FIELDS)
            or method.name in IDEMPOTENT_WRITES.get(service.full_name, ())
        ):
            names.append(method.name)
    return names


def service_config(service: ServiceDescriptor) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": service.full_name, "method": name} for name in retryable_methods(service)],
                    "retryPolicy": {
                        "maxAttempts": 5,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
            # The retry budget (gRFC A6), per channel target: each failed attempt costs a token, each
            # success gives back 0.1, and retries happen only while more than half (50) are left.
            # A burst (a replica killed under load fails every call in flight on it at once) is
            # absorbed and retried on the other replicas; a backend that keeps failing soon gets
            # about one attempt per call instead of maxAttempts, so retries cannot multiply the
            # load on a service that is already down.
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
        }
    )


def call_options(
    timeout: float | None,
    metadata: Any,
    *,
    service_tokens: ServiceIdentity | None,
    default_timeout: float,
) -> tuple[float, grpc.aio.Metadata]:
    """The deadline (never more than the incoming RPC has left) and the metadata (request id,
    this process's service identity) of an outgoing call."""
    timeout = timeout if timeout is not None else default_timeout
    left = time_left()
    if left is not None:
        timeout = max(min(timeout, left), MIN_DEADLINE_SECONDS)
    pairs = list(metadata or ())
    keys = {key for key, _ in pairs}
    request_id = current_request_id()
    if request_id and REQUEST_ID_METADATA_KEY not in keys:
        pairs.append((REQUEST_ID_METADATA_KEY, request_id))
    if service_tokens is not None and SERVICE_METADATA_KEY not in keys:
        pairs.append((SERVICE_METADATA_KEY, service_tokens.mint()))
    return timeout, grpc.aio.Metadata(*pairs)


class _CallDefaults:
    """Adds deadline, request id and service identity to every outgoing call (as an interceptor,
    for channels made with `make_channel`)."""

    def __init__(self, service_tokens: ServiceIdentity | None, default_timeout: float) -> None:
        self._service_tokens = service_tokens
        self._default_timeout = default_timeout

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        timeout, metadata = call_options(
            details.timeout,
            details.metadata,
            service_tokens=self._service_tokens,
            default_timeout=self._default_timeout,
        )
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


class _UnaryUnary(_CallDefaults, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_CallDefaults, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


def make_channel(
    target: str,
    service: str,
    *,
    service_tokens: ServiceIdentity | None,
    default_timeout: float = 10.0,
    tracing: list | None = None,
    call_defaults: bool = True,
) -> grpc.aio.Channel:
    """A channel to `service`. With `call_defaults` (the default) an interceptor gives every call
    its deadline, request id and identity; `ServiceClients` turns it off and applies the same
    `call_options` in its stubs, which spares the interceptor's extra task on every call."""
    descriptor, _ = SERVICES[service]
    interceptors: list = []
    if call_defaults:
        interceptors += [_UnaryUnary(service_tokens, default_timeout), _UnaryStream(service_tokens, default_timeout)]
    return grpc.aio.insecure_channel(
        grpc_target(target),
        options=[
            ("grpc.service_config", service_config(descriptor)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # gRPC's default backoff grows to 120 s between connection attempts: a replica that
            # came back (or started after its callers) stayed unused that long. A connect attempt
            # every 5 s at most to a peer that is down costs nothing.
            ("grpc.max_reconnect_backoff_ms", 5_000),
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ],
        interceptors=[*interceptors, *(tracing or [])] or None,
    )


class _DefaultedMethod:
    """One RPC of a stub, called with `call_options` applied."""

    __slots__ = ("_call", "_clients")

    def __init__(self, call: Any, clients: ServiceClients) -> None:
        self._call = call
        self._clients = clients

    def __call__(self, request: Any, *, timeout: float | None = None, metadata: Any = None, **kwargs: Any) -> Any:
        timeout, metadata = call_options(
            timeout,
            metadata,
            service_tokens=self._clients.service_tokens,
            default_timeout=self._clients.default_timeout,
        )
        return self._call(request, timeout=timeout, metadata=metadata, **kwargs)


class _DefaultedStub:
    """A generated stub whose every method goes through `call_options`."""

    def __init__(self, stub: Any, clients: ServiceClients) -> None:
        self._stub = stub
        self._clients = clients

    def __getattr__(self, name: str) -> _DefaultedMethod:
        method = _DefaultedMethod(getattr(self._stub, name), self._clients)
        setattr(self, name, method)  # built once per method
        return method


class ServiceClients:
    """Stubs for the other services, each on one long-lived channel created on first use."""

    def __init__(self, settings: BaseShopSettings, caller_name: str) -> None:
        self._settings = settings
        self._caller_name = caller_name
        self.service_tokens = ServiceIdentity.from_settings(settings, caller_name)
        self.default_timeout = settings.rpc_timeout_seconds
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = make_channel(
                getattr(self._settings, f"{service}_target"),
                service,
                service_tokens=self.service_tokens,
                default_timeout=self.default_timeout,
                tracing=client_interceptors(self._caller_name, self._settings.otlp_endpoint),
                call_defaults=False,
            )
        return self._channels[service]

    def stub(self, service: str) -> Any:
        if service not in self._stubs:
            self._stubs[service] = _DefaultedStub(SERVICES[service][1](self.channel(service)), self)
        return self._stubs[service]

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceAsyncStub:
        return self.stub("auth")

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return self.stub("catalog")

    @property
    def cart(self) -> cart_pb2_grpc.CartServiceAsyncStub:
        return self.stub("cart")

    @property
    def orders(self) -> orders_pb2_grpc.OrdersServiceAsyncStub:
        return self.stub("orders")

    @property
    def payments(self) -> payments_pb2_grpc.PaymentsServiceAsyncStub:
        return self.stub("payments")

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
