from shop.lib.migrations import run_env

from services.cart.models import CartBase

run_env(CartBase.metadata, lock_name="cart-migrations")
