"""A server built with the shared bootstrap (shop.lib.server) whose ListPayments takes
SLOW_SECONDS: a vehicle for the graceful-shutdown test. `python -m tests.runtime.slow_server`."""

from __future__ import annotations

import asyncio
import os

from shop.lib.server import ServiceDefinition, ShopServer
from shop.lib.settings import ServiceSettings
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

SERVICE_NAME = payments_pb2.DESCRIPTOR.services_by_name["PaymentsService"].full_name


class SlowServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def ListPayments(self, request, context):
        await asyncio.sleep(self.seconds)
        return payments_pb2.ListPaymentsResponse()


def build() -> ShopServer:
    settings = ServiceSettings()
    definition = ServiceDefinition(
        name="slow",
        servicers=[
            (
                payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
                SlowServicer(float(os.environ.get("SLOW_SECONDS", "2"))),  # type: ignore[abstract]  # serves only the RPCs under test
                SERVICE_NAME,
            )
        ],
        verifier=None,
    )
    return ShopServer(definition, settings)


if __name__ == "__main__":
    asyncio.run(build().serve_until_signal())
