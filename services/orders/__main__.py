"""`python -m services.orders` serves; `python -m services.orders migrate` migrates and exits."""

from services.orders.config import OrdersSettings
from services.orders.server import MIGRATIONS_DIR, build_server
from shop.lib.runtime import run_service

if __name__ == "__main__":
    run_service("orders", OrdersSettings(), build_server, MIGRATIONS_DIR)
