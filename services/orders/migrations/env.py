from shop.lib.migrations import run_env

from services.orders.models import OrdersBase

run_env(OrdersBase.metadata, lock_name="orders-migrations")
