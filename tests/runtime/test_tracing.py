"""OpenTelemetry: with SHOP_OTLP_ENDPOINT set, one request is one trace across the gateway and the
services (W3C trace context through the gRPC and HTTP hops), exported over OTLP/HTTP to a local
receiver that stands in for a collector."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.app import create_app
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from shop.payments.v1 import payments_pb2_grpc
from tests.harness import free_port, identity_settings
from tests.runtime.test_deadlines import Callee, Caller, server


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(
                                {
                                    "service": service,
                                    "name": span.name,
                                    "kind": span.kind,
                                    "trace": span.trace_id.hex(),
                                    "span": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


async def test_one_rpc_chain_is_one_trace_across_services(receiver):
    callee_port, caller_port = free_port(), free_port()
    endpoint = {"otlp_endpoint": receiver.endpoint}
    callee_server = server(
        "payments",
        Callee(),  # type: ignore[abstract]  # serves only the RPCs under test
        payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
        "shop.payments.v1.PaymentsService",
        callee_port,
    )
    callee_server.settings.otlp_endpoint = receiver.endpoint
    clients = ServiceClients(
        BaseShopSettings(payments_target=f"127.0.0.1:{callee_port}", **identity_settings("catalog"), **endpoint),
        "catalog",
    )
    caller_server = server(
        "catalog",
        Caller(clients),  # type: ignore[abstract]  # serves only the RPCs under test
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        "shop.catalog.v1.CatalogService",
        caller_port,
    )
    caller_server.settings.otlp_endpoint = receiver.endpoint
    await callee_server.start()
    await caller_server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{caller_port}") as channel:
            await catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(catalog_pb2.GetProductRequest(), timeout=5)
    finally:
        await clients.close()
        await caller_server.stop(grace=0)  # flushes the spans
        await callee_server.stop(grace=0)

    spans = receiver.spans
    caller_span = next(s for s in spans if s["service"] == "shop-catalog" and s["name"].endswith("/GetProduct"))
    client_span = next(s for s in spans if s["service"] == "shop-catalog" and s["name"].endswith("/ListPayments"))
    callee_span = next(s for s in spans if s["service"] == "shop-payments" and s["name"].endswith("/ListPayments"))
    assert caller_span["trace"] == client_span["trace"] == callee_span["trace"]
    assert client_span["parent"] == caller_span["span"]
    assert callee_span["parent"] == client_span["span"]


async def test_the_gateway_starts_the_trace_and_passes_it_on(suite, receiver):
    app = create_app(suite.gateway_settings(otlp_endpoint=receiver.endpoint))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.get("/api/v1/categories")
            assert response.status_code == 200
            assert (await client.get("/healthz")).status_code == 200
    spans = [s for s in receiver.spans if s["service"] == "shop-gateway"]
    http_span = next(s for s in spans if s["name"].startswith("GET /api/v1/categories") and not s["parent"])
    grpc_span = next(s for s in spans if s["name"].endswith("CatalogService/ListCategories"))
    assert grpc_span["trace"] == http_span["trace"]
    assert not [s for s in spans if "healthz" in s["name"]]
