"""The FastAPI application: routes from gateway/routes/, the error envelope, the middleware stack."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.config import GatewaySettings
from gateway.deps import GatewayState
from gateway.errors import install_error_handlers
from gateway.middleware import BodyLimitMiddleware, RequestContextMiddleware
from gateway.openapi import build_openapi
from gateway.ratelimit import RateLimitMiddleware
from gateway.responses import JSONResponse
from gateway.routes import all_routers
from gateway.web import install_web
from shop.lib.server import freeze_startup_heap
from shop.lib.tracing import flush, provider_for

DESCRIPTION = """The shop's public REST API. JSON bodies in camelCase; money in integer minor units;
errors as `{"error": {"code", "message", "details", "requestId"}}`."""


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
        docs_url=None,  # /docs is served from vendored assets (gateway/web.py), never a CDN
        redoc_url=None,
        default_response_class=JSONResponse,
        # The shop's metrics are Prometheus (on their own port); FastAPI's native OpenTelemetry
        # would otherwise look up three global providers on every request to find it has none.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = state
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    for router in all_routers():
        # The routes themselves, not `include_router`: FastAPI 0.16x matches an included router's
        # routes twice per request (to pick the router, then inside it), with scope bookkeeping per
        # route passed over: ~2 µs each instead of ~0.7, plus ~10 µs per request (measured). An
        # APIRouter's prefix, tags and dependencies are already in each of its routes.
        app.router.routes.extend(router.routes)
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
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
            "Last-Event-ID",
            "X-Request-ID",
            "X-Session-ID",
        ],
        expose_headers=["X-Request-ID", "X-Session-ID", "Idempotent-Replayed", "Retry-After", "ETag"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, settings=settings)
    provider = provider_for("gateway", settings.otlp_endpoint)
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="healthz,readyz")
    return app
