"""Every outgoing call gets a deadline, never more than the incoming RPC has left, and carries the
request id and the caller's service identity (shop.lib.clients + shop.lib.server)."""

from __future__ import annotations

import grpc

from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.clients import ServiceClients
from shop.lib.context import current_caller, current_request_id
from shop.lib.server import ServiceDefinition, ShopServer
from shop.lib.settings import BaseShopSettings, ServiceSettings
from shop.lib.tokens import generate_private_key_pem
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.harness import free_port, identity_settings


# The test servicers serve only the RPCs under test (grpc answers UNIMPLEMENTED for the others);
# the generated stubs declare every RPC abstract, hence the `ignore[abstract]` where they are made.
class Callee(payments_pb2_grpc.PaymentsServiceServicer):
    """Records what each call arrived with."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    async def ListPayments(self, request, context):
        self.seen.append(
            {
                "time_remaining": context.time_remaining(),
                "request_id": current_request_id(),
                "service": current_caller().service,
            }
        )
        return payments_pb2.ListPaymentsResponse()


class Caller(catalog_pb2_grpc.CatalogServiceServicer):
    """Calls the callee from inside its own RPC, as services call each other."""

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    async def GetProduct(self, request, context):
        await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest())
        return catalog_pb2.GetProductResponse()


def server(name, servicer, add, full_name, port) -> ShopServer:
    definition = ServiceDefinition(name=name, servicers=[(add, servicer, full_name)], verifier=None)
    return ShopServer(
        definition, ServiceSettings(grpc_address=f"127.0.0.1:{port}", grace_seconds=0.5, **identity_settings(name))
    )


async def test_deadline_is_capped_by_the_callers_remaining_time_and_ids_propagate():
    callee_port, caller_port = free_port(), free_port()
    callee = Callee()  # type: ignore[abstract]  # serves only the RPCs under test
    callee_server = server(
        "payments",
        callee,
        payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
        "shop.payments.v1.PaymentsService",
        callee_port,
    )
    settings = BaseShopSettings(
        payments_target=f"127.0.0.1:{callee_port}", rpc_timeout_seconds=10, **identity_settings("catalog")
    )
    inner_clients = ServiceClients(settings, "catalog")
    caller_server = server(
        "catalog",
        Caller(inner_clients),  # type: ignore[abstract]  # serves only the RPCs under test
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        "shop.catalog.v1.CatalogService",
        caller_port,
    )
    await callee_server.start()
    await caller_server.start()
    try:
        # Direct call without a timeout: the default deadline applies.
        await inner_clients.payments.ListPayments(payments_pb2.ListPaymentsRequest())
        assert 8 < callee.seen[-1]["time_remaining"] <= 10.5  # gRPC rounds the sent timeout up a little
        assert callee.seen[-1]["service"] == "catalog"

        # Through the caller with 1.5 s: the callee gets at most what is left of those 1.5 s.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{caller_port}") as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            await stub.GetProduct(
                catalog_pb2.GetProductRequest(), timeout=1.5, metadata=[("x-request-id", "trace-me-42")]
            )
        # capped to what the caller had left (gRPC rounds the timeout it sends up a little), not 10 s
        assert callee.seen[-1]["time_remaining"] <= 1.6
        assert callee.seen[-1]["request_id"] == "trace-me-42"
        assert callee.seen[-1]["service"] == "catalog"
    finally:
        await inner_clients.close()
        await caller_server.stop(grace=0)
        await callee_server.stop(grace=0)


async def test_forged_service_identity_is_refused():
    port = free_port()
    callee = Callee()  # type: ignore[abstract]  # serves only the RPCs under test
    callee_server = server(
        "payments",
        callee,
        payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
        "shop.payments.v1.PaymentsService",
        port,
    )
    await callee_server.start()
    forged = ServiceClients(
        BaseShopSettings(payments_target=f"127.0.0.1:{port}", service_key=generate_private_key_pem()), "orders"
    )
    try:
        try:
            await forged.payments.ListPayments(payments_pb2.ListPaymentsRequest())
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert callee.seen == []
    finally:
        await forged.close()
        await callee_server.stop(grace=0)
