"""The OpenAPI document at /openapi.json, as client generators consume it (API.md Conventions):
FastAPI's schema from the routes' models (gateway/schemas/), plus what every operation shares:

- the one error envelope (`ErrorEnvelope`) on every 4xx/5xx status;
- the statuses any operation can answer besides its own (`errors(...)` on the route): 400 when it
  takes parameters or a body, 401 when it takes a token, 413 with a body, 429 (rate limits), 500,
  503 and 504 (a backend down or slow);
- the bearer scheme in `components.securitySchemes`, required on operations that need a user and
  optional on those that read one when sent (read from each route's dependencies);
- 204 and 202 answers documented with no content;
- headers a route checks itself (`Idempotency-Key`, to answer IDEMPOTENCY_KEY_REQUIRED) marked
  required when their schema says `x-required`;
- optional parameters that are left out or sent, never null: FastAPI writes `X | None` as
  `anyOf [X, null]`, and a generator would send the text "null".
FastAPI's own 422 is never answered (validation errors are 400 VALIDATION_ERROR): it is dropped.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.schemas.common import ErrorEnvelope

BEARER = "bearerAuth"
OPTIONAL = "bearerAuthOptional"
ERROR_TEXT = {
    400: "VALIDATION_ERROR (details.fields), or the operation's own code",
    401: "UNAUTHENTICATED: a token is missing, malformed, expired or revoked",
    402: "PAYMENT_DECLINED",
    403: "FORBIDDEN: the token's role may not do this",
    404: "not found (another user's resource too)",
    409: "conflict with the resource's state",
    412: "PRECONDITION_FAILED: If-Match no longer matches; nothing changed",
    413: "PAYLOAD_TOO_LARGE: the body is over 1 MiB",
    422: "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used with another body",
    429: "RATE_LIMITED (or the operation's own code), with Retry-After",
    500: "INTERNAL",
    501: "not implemented",
    503: "SERVICE_UNAVAILABLE: a backend is down; try again shortly",
    504: "a backend did not answer in time",
}
_ENVELOPE = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
_ALWAYS = (429, 500, 503, 504)
_NO_CONTENT = {"202", "204"}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, Any]:
    """`responses=` entries: the error envelope for the route's own error statuses. A keyword
    `e409="CART_EMPTY, ..."` describes a status in the route's own words."""
    responses: dict[int | str, Any] = {}
    for status in statuses:
        text = descriptions.get(f"e{status}", ERROR_TEXT.get(status, "error"))
        responses[status] = {"model": ErrorEnvelope, "description": text}
    return responses


def _calls(dependant: Any) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _auth_by_operation(app: FastAPI) -> dict[str, str]:
    """operationId -> "required" (the route depends on current_user) or "optional" (optional_user),
    read from the routes' dependencies: documentation that costs the requests nothing."""
    from gateway.deps import current_user, optional_user

    found = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.operation_id:
            calls = _calls(route.dependant)
            if current_user in calls:
                found[route.operation_id] = BEARER
            elif optional_user in calls:
                found[route.operation_id] = OPTIONAL
    return found


def _security(operation: dict[str, Any], auth: str | None) -> None:
    """A required bearer wins over an optional one (`openapi_extra` may name either)."""
    names = {name for entry in operation.get("security", []) for name in entry} | ({auth} if auth else set())
    if BEARER in names:
        operation["security"] = [{BEARER: []}]
    elif OPTIONAL in names:
        operation["security"] = [{}, {BEARER: []}]


def _own_body(response: dict[str, Any]) -> bool:
    """An error status answered with a body of its own (503 of /readyz), not the envelope."""
    refs = [media.get("schema", {}).get("$ref", "") for media in response.get("content", {}).values()]
    return any(ref and not ref.endswith("/ErrorEnvelope") for ref in refs)


def _not_null(schema: dict[str, Any]) -> None:
    """A parameter's schema without the `null` FastAPI adds for an optional one: a query or header
    value is text, and an absent parameter is simply not sent."""
    options = schema.get("anyOf")
    if not options or {"type": "null"} not in options:
        return
    kept = [option for option in options if option != {"type": "null"}]
    if len(kept) == 1:
        del schema["anyOf"]
        for key, value in kept[0].items():
            schema.setdefault(key, value)
    else:
        schema["anyOf"] = kept


def _finish(operation: dict[str, Any], auth: str | None, api: bool) -> None:
    responses = operation.setdefault("responses", {})
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        # A header the route checks itself (to answer its own code) but that is required all the same.
        if schema.pop("x-required", False):
            parameter["required"] = True
        _not_null(schema)
    # FastAPI's own 422 (HTTPValidationError) goes; a 422 a route declares itself (e.g.
    # IDEMPOTENCY_KEY_REUSED) stays: FastAPI adds its own only where the route declared none.
    had_validation = "HTTPValidationError" in json.dumps(responses.get("422", {}))
    if had_validation:
        del responses["422"]
    if had_validation or operation.get("parameters") or operation.get("requestBody"):
        responses.setdefault("400", {"description": ERROR_TEXT[400]})
    if operation.get("requestBody"):
        responses.setdefault("413", {"description": ERROR_TEXT[413]})
    _security(operation, auth)
    if any(BEARER in entry for entry in operation.get("security", [])):
        responses.setdefault("401", {"description": ERROR_TEXT[401]})
    if api:
        for status in _ALWAYS:
            responses.setdefault(str(status), {"description": ERROR_TEXT[status]})
    for status, response in responses.items():
        if status[:1] in ("4", "5") and not _own_body(response):
            response["content"] = _ENVELOPE
        elif status in _NO_CONTENT:
            response.pop("content", None)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "`Authorization: Bearer <accessToken>` from login, register or refresh.",
        }
    }
    auth = _auth_by_operation(app)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _finish(operation, auth.get(operation.get("operationId", "")), path.startswith("/api/"))
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
