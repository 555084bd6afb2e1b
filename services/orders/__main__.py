"""`python -m services.orders` serves; `python -m services.orders migrate` migrates and exits."""

from shop.lib.runtime import run_service

from services.orders.config import OrdersSettings
from services.orders.server import MIGRATIONS_DIR, build_server

if __name__ == "__main__":
    run_service("orders", OrdersSettings(), build_server, MIGRATIONS_DIR)
