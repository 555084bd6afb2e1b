"""Operations and payment webhooks: the small shapes of /healthz, /readyz, the JWKS and a webhook's
answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas.common import OutModel


class Health(OutModel):
    status: Literal["ok"]


class Readiness(OutModel):
    services: dict[str, str] = Field(description="Each backend's gRPC health: SERVING, NOT_SERVING, UNAVAILABLE, ...")


class Jwks(BaseModel):
    """RFC 7517 JSON Web Key Set."""

    model_config = ConfigDict(extra="allow")
    keys: list[dict[str, Any]]


class WebhookResult(OutModel):
    event_id: str
    type: str
    duplicate: bool = Field(description="The event was applied before; nothing changed.")
