"""`python -m services.payments` serves; `python -m services.payments migrate` migrates and exits."""

from services.payments.config import PaymentsSettings
from services.payments.server import MIGRATIONS_DIR, build_server
from shop.lib.runtime import run_service

if __name__ == "__main__":
    run_service("payments", PaymentsSettings(), build_server, MIGRATIONS_DIR)
