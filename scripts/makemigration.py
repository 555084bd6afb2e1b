"""Autogenerate an Alembic revision for one service from its models.

Usage: .venv/bin/python scripts/makemigration.py SERVICE "message"
It migrates a throwaway SQLite database to head, then compares it with the models. Review the
result: PostgreSQL-only parts (e.g. full-text indexes) are written by hand behind a dialect check.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from shop.lib.migrations import alembic_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    service, message = sys.argv[1], sys.argv[2]
    migrations = ROOT / "services" / service / "migrations"
    with tempfile.TemporaryDirectory() as tmp:
        config = alembic_config(migrations, f"sqlite:///{tmp}/scratch.db")
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    main()
