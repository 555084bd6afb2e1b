"""`python -m shop.lib.healthcheck HOST:PORT [SERVICE]`: exit 0 when the gRPC health service says SERVING
(Docker HEALTHCHECK)."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m shop.lib.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    service = argv[1] if len(argv) > 1 else ""
    with grpc.insecure_channel(argv[0]) as channel:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods
            response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=service), timeout=3
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}", file=sys.stderr)
            return 1
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    return 0 if serving else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
