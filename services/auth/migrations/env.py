from services.auth.models import AuthBase
from shop.lib.migrations import run_env

run_env(AuthBase.metadata, lock_name="auth-migrations")
