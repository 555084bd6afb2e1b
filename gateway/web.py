"""The web UI (gateway/web/): the storefront at `/`, the admin console at `/admin`, static assets at
`/assets`, and the API's Swagger UI at `/docs` (its assets vendored there too).

Both are static files, ordinary same-origin clients of the REST API (no server-side rendering, no
build step). Each page path of the single-page apps answers its HTML shell, and the browser's
router draws the page; every other path keeps the gateway's JSON 404 envelope (so `/api/...`,
`/metrics` and mistyped paths are unchanged). None of these routes is in the OpenAPI document.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent / "web"

# The storefront's page paths (js/store/app.js has the same list); `{rest:path}` covers ids.
STOREFRONT_PATHS = (
    "/",
    "/products",
    "/products/{rest:path}",
    "/cart",
    "/checkout",
    "/login",
    "/register",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/account",
    "/account/{rest:path}",
    "/orders",
    "/orders/{rest:path}",
)
ADMIN_PATHS = ("/admin", "/admin/{rest:path}")
# Swagger UI for /docs, vendored like the UI's libraries (gateway/web/README.md): /docs works offline.
SWAGGER_UI = "/assets/vendor/swagger-ui-dist-5.35.0"

_INLINE_SCRIPT = re.compile(r"<script type=\"importmap\">(.*?)</script>", re.S)


def _page(name: str) -> Callable[[], Awaitable[Response]]:
    """The HTML shell, with a Content-Security-Policy that allows only this origin's scripts (and
    the inline import map, by its hash): no CDN, no inline code, no framing."""
    html = (WEB_DIR / name).read_text(encoding="utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(match.encode()).digest()).decode() + "'"
        for match in _INLINE_SCRIPT.findall(html)
    )
    policy = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    body = html.encode()
    headers = {"Content-Security-Policy": policy, "Cache-Control": "no-cache"}

    async def serve() -> Response:
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return serve


def _docs(openapi_url: str, title: str) -> Callable[[], Awaitable[Response]]:
    """/docs: Swagger UI from this origin's vendored files, reading /openapi.json; the online
    validator badge is off (it would call out to the internet)."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - docs",
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
    body, headers = bytes(page.body), {"Cache-Control": "no-cache"}

    async def serve() -> Response:
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return serve


def install_web(app: FastAPI) -> None:
    """Adds the UI's routes after the API's, so they never shadow an API path."""
    app.mount("/assets", StaticFiles(directory=WEB_DIR / "assets"), name="web-assets")
    app.add_api_route(
        "/docs", _docs(app.openapi_url or "/openapi.json", app.title), methods=["GET"], include_in_schema=False
    )
    storefront, admin = _page("index.html"), _page("admin.html")
    for path in STOREFRONT_PATHS:
        app.add_api_route(path, storefront, methods=["GET"], include_in_schema=False)
    for path in ADMIN_PATHS:
        app.add_api_route(path, admin, methods=["GET"], include_in_schema=False)
