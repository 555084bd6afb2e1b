"""RPC handlers of the auth service: parse the request, call the domain, map the result."""

from __future__ import annotations

from shop.auth.v1 import auth_pb2_grpc


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """RPCs not built yet keep the generated base behaviour: UNIMPLEMENTED."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
