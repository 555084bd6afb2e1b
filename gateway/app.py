"""The FastAPI application: routes from gateway/routes/, the error envelope, the middleware stack."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from gateway.config import GatewaySettings
from gateway.deps import GatewayState
from gateway.errors import install_error_handlers
from gateway.middleware import BodyLimitMiddleware, RequestContextMiddleware
from gateway.ratelimit import RateLimitMiddleware
from gateway.responses import JSONResponse
from gateway.routes import all_routers
from gateway.web import install_web
from shop.lib.server import freeze_startup_heap
from shop.lib.tracing import flush, provider_for

DESCRIPTION = """The shop's public REST API. JSON bodies in camelCase; money in integer minor units;
errors as `{"error": {"code", "message", "details", "requestId"}}`."""


ERROR_SCHEMA = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "requestId"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable (UPPER_SNAKE)"},
                "message": {"type": "string"},
                "details": {"type": "object", "description": "e.g. fields: {fieldName: [messages]}"},
                "requestId": {"type": "string"},
            },
        }
    },
}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, with validation errors documented as they are answered: 400 in the
    error envelope (not FastAPI's default 422), and the envelope on every error response."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorEnvelope"] = ERROR_SCHEMA
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None or operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", {"description": "VALIDATION_ERROR: the request is not valid"})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = envelope
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    app.openapi_schema = schema
    return schema


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    state = GatewayState(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await state.start()
        freeze_startup_heap()
        yield
        await state.stop()
        flush("gateway", settings.otlp_endpoint)

    app = FastAPI(
        title="The Shop API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=JSONResponse,
    )
    app.state.gateway = state
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    for router in all_routers():
        app.include_router(router)
    install_web(app)  # the storefront and admin console (gateway/web/), after every API route
    # Added innermost first: the request context wraps everything, so even a 429 or 413 gets
    # the request id and security headers; CORS headers go on every allowed response.
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    if settings.rate_limit_per_minute or settings.auth_rate_limit_per_minute:  # both 0: no layer to pass
        app.add_middleware(RateLimitMiddleware, settings=settings, limiter=state.limiter)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "X-Session-ID"],
        expose_headers=["X-Request-ID", "X-Session-ID", "Idempotent-Replayed", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, settings=settings)
    provider = provider_for("gateway", settings.otlp_endpoint)
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz")
    return app
