from services.cart.models import CartBase
from shop.lib.migrations import run_env

run_env(CartBase.metadata, lock_name="cart-migrations")
