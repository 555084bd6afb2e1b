"""`python -m services.auth` serves; `python -m services.auth migrate` migrates and exits."""

from services.auth.config import AuthSettings
from services.auth.server import MIGRATIONS_DIR, build_server
from shop.lib.runtime import run_service

if __name__ == "__main__":
    run_service("auth", AuthSettings(), build_server, MIGRATIONS_DIR)
