from shop.lib.migrations import run_env

from services.auth.models import AuthBase

run_env(AuthBase.metadata, lock_name="auth-migrations")
