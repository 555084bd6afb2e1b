"""`python -m services.cart` serves; `python -m services.cart migrate` migrates and exits."""

from services.cart.config import CartSettings
from services.cart.server import MIGRATIONS_DIR, build_server
from shop.lib.runtime import run_service

if __name__ == "__main__":
    run_service("cart", CartSettings(), build_server, MIGRATIONS_DIR)
