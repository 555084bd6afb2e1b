"""The web UI's API module type-checked against the contract (issue 13): TypeScript types generated
from the gateway's /openapi.json with openapi-typescript, then `tsc --checkJs --strict` over
gateway/web/assets/js/api.js (its JSDoc types name the generated ones), so the UI and the contract
cannot drift. gateway/tests/test_web_types.py runs it in `make test`; by hand:

    .venv/bin/python -m scripts.web_types

The Node tools are pinned in gateway/web/typecheck/ (package.json + package-lock.json) and
installed there with `npm ci` into node_modules/ (git-ignored) when the lock changed since the last
install. The document comes from the gateway's FastAPI app, the function that serves
/openapi.json, so nothing has to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TYPECHECK = ROOT / "gateway" / "web" / "typecheck"
NODE_MODULES = TYPECHECK / "node_modules"
# The lock's hash, written after a successful `npm ci`: an install is skipped while it matches.
STAMP = NODE_MODULES / ".shop-installed"
# The name api.js (through contract.d.ts) imports the generated types by; tsconfig.json maps it.
TYPES_MODULE = "shop-openapi"


class NodeMissing(RuntimeError):
    """node or npm is not on PATH."""


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str


def openapi_document() -> dict[str, Any]:
    """The document the gateway serves at /openapi.json (no services needed to build it)."""
    from gateway.app import create_app

    return create_app().openapi()


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise NodeMissing("node and npm are needed for the web UI's type check (apt-get install nodejs npm)")
    return node, npm


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((TYPECHECK / name).read_bytes())
    return digest.hexdigest()


def install() -> str:
    """`npm ci` in gateway/web/typecheck unless node_modules already holds this lock; returns node's path."""
    node, npm = _tools()
    if STAMP.is_file() and STAMP.read_text() == _lock_digest():
        return node
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=TYPECHECK,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"npm ci failed in {TYPECHECK}:\n{done.stdout}{done.stderr}")
    STAMP.write_text(_lock_digest())
    return node


def check(document: dict[str, Any], workdir: Path) -> Result:
    """Generates the types of `document` into `workdir` and type-checks api.js against them. The
    result holds the output of the step that failed, or tsc's (empty when all is well)."""
    node = install()
    workdir.mkdir(parents=True, exist_ok=True)
    spec, types, config = workdir / "openapi.json", workdir / "openapi.d.ts", workdir / "tsconfig.json"
    spec.write_text(json.dumps(document))
    # --default-non-nullable false: a body field with a default may be left out (else it reads as
    # required); parameters are not affected.
    generate = subprocess.run(
        [
            node,
            str(NODE_MODULES / "openapi-typescript" / "bin" / "cli.js"),
            str(spec),
            "--default-non-nullable",
            "false",
            "-o",
            str(types),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if generate.returncode:
        return Result(generate.returncode, f"openapi-typescript failed:\n{generate.stdout}{generate.stderr}")
    # The committed tsconfig.json with the generated module mapped to this run's file.
    config.write_text(
        json.dumps(
            {
                "extends": str(TYPECHECK / "tsconfig.json"),
                "compilerOptions": {"paths": {TYPES_MODULE: [str(types)]}},
            }
        )
    )
    tsc = subprocess.run(
        [node, str(NODE_MODULES / "typescript" / "bin" / "tsc"), "-p", str(config), "--pretty", "false"],
        cwd=TYPECHECK,
        capture_output=True,
        text=True,
        check=False,
    )
    return Result(tsc.returncode, tsc.stdout + tsc.stderr)


def main() -> int:
    try:
        result = check(openapi_document(), TYPECHECK / "generated")
    except NodeMissing as error:
        print(error, file=sys.stderr)
        return 2
    print(result.output or "api.js matches the contract (tsc: no errors)", end="" if result.output else "\n")
    return 1 if result.returncode else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
