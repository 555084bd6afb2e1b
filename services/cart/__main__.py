"""`python -m services.cart` serves; `python -m services.cart migrate` migrates and exits."""

from shop.lib.runtime import run_service

from services.cart.config import CartSettings
from services.cart.server import MIGRATIONS_DIR, build_server

if __name__ == "__main__":
    run_service("cart", CartSettings(), build_server, MIGRATIONS_DIR)
