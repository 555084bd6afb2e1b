"""`python -m services.catalog` serves; `python -m services.catalog migrate` migrates and exits."""

from shop.lib.runtime import run_service

from services.catalog.config import CatalogSettings
from services.catalog.server import MIGRATIONS_DIR, build_server

if __name__ == "__main__":
    run_service("catalog", CatalogSettings(), build_server, MIGRATIONS_DIR)
