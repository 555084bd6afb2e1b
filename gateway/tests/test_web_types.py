"""The web UI's API module against the contract (issue 13): TypeScript types generated from the
gateway's /openapi.json with openapi-typescript, and `tsc --checkJs --strict` over
gateway/web/assets/js/api.js, whose JSDoc types name them (scripts/web_types.py does the work).

Needs node and npm (the tools themselves are pinned in gateway/web/typecheck/ and installed with
`npm ci`); without them the tests skip, except under CI=true, where they fail (`make test` and
.ci/run install Debian's nodejs and npm).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest

from scripts import web_types

API_JS = "api.js"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return web_types.openapi_document()


@pytest.fixture(scope="module", autouse=True)
def node_tools() -> None:
    try:
        web_types.install()
    except web_types.NodeMissing as missing:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(missing))


def test_the_api_module_type_checks_against_the_contract(document, tmp_path: Path):
    result = web_types.check(document, tmp_path)
    assert result.returncode == 0, f"tsc over {API_JS} against /openapi.json:\n{result.output}"


def _rename_property(document: dict[str, Any], schema: str, old: str, new: str) -> None:
    model = document["components"]["schemas"][schema]
    model["properties"][new] = model["properties"].pop(old)
    model["required"] = [new if name == old else name for name in model.get("required", [])]


def test_a_drifted_contract_fails_the_check_naming_each_drift(document, tmp_path: Path):
    drifted = copy.deepcopy(document)
    # a field api.js reads in answers (the access token of login, register and refresh)
    _rename_property(drifted, "Tokens", "accessToken", "access_token")
    # a field api.js sends in a body (POST /cart/items)
    _rename_property(drifted, "AddCartItemBody", "productId", "product_id")
    # a route api.js calls outside request() (the order's event stream, read with fetch)
    del drifted["paths"]["/api/v1/orders/{orderId}/events"]

    result = web_types.check(drifted, tmp_path)
    assert result.returncode != 0, "tsc passed against a contract api.js no longer matches"
    errors = [
        line for line in result.output.splitlines() if re.search(rf"{re.escape(API_JS)}\(\d+,\d+\): error TS", line)
    ]
    for named in ("'accessToken'", "'productId'", "'\"/orders/{orderId}/events\"'"):
        assert any(named in line for line in errors), f"no error names {named}:\n{result.output}"
