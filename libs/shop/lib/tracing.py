"""OpenTelemetry traces across the gateway and the services, on when SHOP_OTLP_ENDPOINT is set.

One TracerProvider per (process role, endpoint), exporting spans in batches over OTLP/HTTP. The
gRPC server and client interceptors (opentelemetry-instrumentation-grpc) and the FastAPI
instrumentation carry the W3C trace context across every hop, so one REST request is one trace.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_providers: dict[tuple[str, str], TracerProvider] = {}


def provider_for(role: str, endpoint: str) -> TracerProvider | None:
    """The provider of this process role (`gateway`, `catalog`, …), or None when tracing is off."""
    if not endpoint:
        return None
    key = (role, endpoint)
    if key not in _providers:
        provider = TracerProvider(resource=Resource.create({"service.name": f"shop-{role}"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
        _providers[key] = provider
    return _providers[key]


def server_interceptors(role: str, endpoint: str) -> list:
    provider = provider_for(role, endpoint)
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=provider)]


def client_interceptors(role: str, endpoint: str) -> list:
    provider = provider_for(role, endpoint)
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=provider))


def flush(role: str, endpoint: str) -> None:
    """Exports what is buffered (at shutdown, so the last spans are not lost)."""
    provider = _providers.get((role, endpoint))
    if provider is not None:
        provider.force_flush(timeout_millis=5000)
