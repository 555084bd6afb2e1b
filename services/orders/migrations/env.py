from services.orders.models import OrdersBase
from shop.lib.migrations import run_env

run_env(OrdersBase.metadata, lock_name="orders-migrations")
