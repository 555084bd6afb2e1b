"""RPC handlers of the cart service: parse the request, call the domain, map the result."""

from __future__ import annotations

from shop.cart.v1 import cart_pb2_grpc


class CartServicer(cart_pb2_grpc.CartServiceServicer):
    """RPCs not built yet keep the generated base behaviour: UNIMPLEMENTED."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
