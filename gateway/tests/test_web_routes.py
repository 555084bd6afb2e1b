"""The web UI's serving (gateway/web.py): page paths answer the HTML shells, assets are served,
everything else keeps the JSON 404 envelope, and nothing loads from another origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "web"

STOREFRONT = [
    "/",
    "/products",
    "/products/0b8f6d2e-1111-4222-8333-944445555666",
    "/cart",
    "/checkout",
    "/login",
    "/register",
    "/forgot-password",
    "/reset-password?token=abc",
    "/verify-email?token=abc",
    "/account",
    "/account/security",
    "/orders",
    "/orders/0b8f6d2e-1111-4222-8333-944445555666",
]
ADMIN = ["/admin", "/admin/products", "/admin/products/new", "/admin/orders/x", "/admin/users"]


@pytest.mark.parametrize("path", STOREFRONT)
async def test_storefront_paths_serve_the_storefront(http, path):
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/assets/js/store/app.js" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path", ADMIN)
async def test_admin_paths_serve_the_admin_console(http, path):
    response = await http.get(path)
    assert response.status_code == 200
    assert "/assets/js/admin/app.js" in response.text


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/products/x/nope", "/api", "/nope", "/assets/js/nope.js", "/adminx"]
)
async def test_other_paths_keep_the_json_404_envelope(http, path):
    response = await http.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_assets_are_served(http):
    response = await http.get("/assets/js/api.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert (await http.get("/assets/css/app.css")).status_code == 200
    assert (await http.get("/assets/vendor/preact-10.29.8/preact.module.js")).status_code == 200


async def test_ui_routes_are_not_in_the_openapi_document(http):
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [
        path for path in paths if not path.startswith(("/api/", "/healthz", "/readyz", "/metrics", "/.well-known"))
    ]


def test_the_import_map_hash_in_the_policy_matches_the_page():
    from gateway.web import _INLINE_SCRIPT

    for name in ("index.html", "admin.html"):
        html = (WEB / name).read_text()
        assert len(_INLINE_SCRIPT.findall(html)) == 1, "one inline script (the import map), allowed by its hash"
        assert not re.search(r"<script(?![^>]*(type=\"importmap\"|src=\"/assets/))", html), "no other inline script"


def test_nothing_loads_from_another_origin_and_every_library_is_vendored_with_its_licence():
    own_code = [*WEB.glob("*.html"), *(WEB / "assets" / "js").rglob("*.js"), *(WEB / "assets" / "css").rglob("*.css")]
    for path in own_code:
        text = path.read_text()
        assert not re.search(r"""(src|href|import)\s*[=(]?\s*["'](https?:)?//""", text), f"{path} loads from elsewhere"
        assert not re.search(r"""from\s+["']https?:""", text), path
    vendor = WEB / "assets" / "vendor"
    for library in vendor.iterdir():
        if library.is_dir():
            assert (library / "LICENSE").is_file(), f"{library.name} has no LICENSE"
            assert re.search(r"-\d+\.\d+\.\d+$", library.name), f"{library.name} is not pinned to a version"
