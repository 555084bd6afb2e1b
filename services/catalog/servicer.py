"""RPC handlers of the catalog service: parse the request, call the domain, map the result."""

from __future__ import annotations

from shop.catalog.v1 import catalog_pb2_grpc


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    """RPCs not built yet keep the generated base behaviour: UNIMPLEMENTED."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
