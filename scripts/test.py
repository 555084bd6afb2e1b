"""`make test`: the static checks of `make lint` (scripts/lint.py: buf, ruff, mypy, bandit), then the
whole pytest suite (PostgreSQL, real servers); any failure fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts import lint

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args: str) -> int:
    print("+", " ".join(args), flush=True)
    return subprocess.call(args, cwd=ROOT)


def ensure_chromium() -> None:
    """Under CI=true, installs Debian's chromium for the browser tests when it is missing (as root;
    the tests fail without it there, rather than skip). .ci/run does the same before `make test`."""
    if os.environ.get("CI") != "true" or shutil.which("chromium") or os.environ.get("SHOP_CHROMIUM"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.call(["apt-get", "update", "-qq"], env=env)
        subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    ensure_chromium()
    failed = lint.main()
    extra = sys.argv[1:]
    code = run(str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", *extra)
    if code == 5:  # no tests collected is a failure, not a pass
        print("no tests ran", file=sys.stderr)
    return 1 if (failed or code) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
