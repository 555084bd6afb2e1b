"""RPC handlers of the orders service: parse the request, call the domain, map the result."""

from __future__ import annotations

from shop.orders.v1 import orders_pb2_grpc


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    """RPCs not built yet keep the generated base behaviour: UNIMPLEMENTED."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
