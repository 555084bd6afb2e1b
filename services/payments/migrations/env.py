from services.payments.models import PaymentsBase
from shop.lib.migrations import run_env

run_env(PaymentsBase.metadata, lock_name="payments-migrations")
