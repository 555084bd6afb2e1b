"""Operations routes: liveness, readiness (gRPC health of every backend), JWKS. The metrics are
not here: `python -m gateway` serves them on their own port (SHOP_METRICS_PORT)."""

from __future__ import annotations

import asyncio
import json

import grpc
from fastapi import APIRouter, Depends, Response
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.deps import GatewayState, get_state
from gateway.schemas.common import render
from gateway.schemas.system import Health, Jwks, Readiness
from shop.auth.v1 import auth_pb2
from shop.lib.clients import SERVICES

router = APIRouter(tags=["operations"])


HEALTHY = render(Health, {"status": "ok"})  # validated once; probes call it often


@router.get(
    "/healthz", operation_id="operations-healthz", summary="200 while the gateway process runs", response_model=Health
)
async def healthz() -> Response:
    return Response(HEALTHY, media_type="application/json")


async def _health(state: GatewayState, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(state.clients.channel(service))
    try:
        # types-grpcio-health-checking declares HealthStub without its methods
        response = await stub.Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=""), timeout=state.settings.readiness_timeout_seconds
        )
    except grpc.aio.AioRpcError as exc:
        return "UNAVAILABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@router.get(
    "/readyz",
    operation_id="operations-readyz",
    summary="200 while the gateway can serve (some backends may be down), else 503",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No backend is SERVING."}},
)
async def readyz(response: Response, state: GatewayState = Depends(get_state)):
    """Each backend's gRPC health. One backend down does not take the gateway out of its Service:
    the routes that need it answer 503 SERVICE_UNAVAILABLE, the others (browsing while orders is
    down) keep working. 503 only when no backend answers SERVING: then nothing can be served."""
    names = list(SERVICES)
    statuses = await asyncio.gather(*(_health(state, name) for name in names))
    services = dict(zip(names, statuses, strict=True))
    ready = any(status == "SERVING" for status in statuses)
    response.status_code = 200 if ready else 503
    return {"services": services}


@router.get(
    "/.well-known/jwks.json",
    operation_id="operations-jwks",
    summary="Public keys that verify access tokens",
    response_model=Jwks,
)
async def jwks(response: Response, state: GatewayState = Depends(get_state)):
    result = await state.clients.auth.GetJwks(auth_pb2.GetJwksRequest())
    response.headers["Cache-Control"] = "public, max-age=300"
    return json.loads(result.jwks_json)
