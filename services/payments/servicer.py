"""RPC handlers of the payments service: parse the request, call the domain, map the result."""

from __future__ import annotations

from shop.payments.v1 import payments_pb2_grpc


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    """RPCs not built yet keep the generated base behaviour: UNIMPLEMENTED."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
