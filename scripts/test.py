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


# Debian packages the suite needs beyond Python, by the command that shows they are there:
# chromium for the browser tests (gateway/tests/test_web_ui.py), node and npm for the web UI's type
# check (gateway/tests/test_web_types.py). Those tests skip without them, except under CI=true.
SYSTEM_PACKAGES = {"chromium": ("chromium",), "node": ("nodejs", "npm"), "npm": ("npm",)}


def ensure_system_packages() -> None:
    """Under CI=true, installs the missing ones with apt-get (as root, else through sudo when it
    needs no password); the tests then fail without them rather than skip. .ci/run does the same
    before `make test`."""
    if os.environ.get("CI") != "true" or not shutil.which("apt-get"):
        return
    missing = sorted(
        {package for command, packages in SYSTEM_PACKAGES.items() if not shutil.which(command) for package in packages}
    )
    if os.environ.get("SHOP_CHROMIUM") and "chromium" in missing:
        missing.remove("chromium")
    if not missing:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        print(f"cannot install {' '.join(missing)}: not root and no sudo", file=sys.stderr)
        return
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]  # env: sudo drops the caller's
    subprocess.call([*apt, "update", "-qq"])
    subprocess.call([*apt, "install", "-y", "-qq", *missing], stdout=subprocess.DEVNULL)


def main() -> int:
    ensure_system_packages()
    failed = lint.main()
    extra = sys.argv[1:]
    code = run(str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", *extra)
    if code == 5:  # no tests collected is a failure, not a pass
        print("no tests ran", file=sys.stderr)
    return 1 if (failed or code) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
