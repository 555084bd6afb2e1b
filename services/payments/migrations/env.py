from shop.lib.migrations import run_env

from services.payments.models import PaymentsBase

run_env(PaymentsBase.metadata, lock_name="payments-migrations")
