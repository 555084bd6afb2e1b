"""`python -m services.catalog` serves; `python -m services.catalog migrate` migrates and exits."""

from services.catalog.config import CatalogSettings
from services.catalog.server import MIGRATIONS_DIR, build_server
from shop.lib.runtime import run_service

if __name__ == "__main__":
    run_service("catalog", CatalogSettings(), build_server, MIGRATIONS_DIR)
