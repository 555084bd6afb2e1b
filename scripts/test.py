"""`make test`: lint the contracts, then run the whole pytest suite (PostgreSQL, real servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args: str) -> int:
    print("+", " ".join(args), flush=True)
    return subprocess.call(args, cwd=ROOT)


def main() -> int:
    failed = run(str(BIN / "buf"), "lint", "protos")
    failed |= run(str(BIN / "ruff"), "check", "--quiet", ".")
    extra = sys.argv[1:]
    code = run(str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", *extra)
    if code == 5:  # no tests collected is a failure, not a pass
        print("no tests ran", file=sys.stderr)
    return 1 if (failed or code) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
