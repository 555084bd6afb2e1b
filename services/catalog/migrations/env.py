from services.catalog.models import CatalogBase
from shop.lib.migrations import run_env

run_env(CatalogBase.metadata, lock_name="catalog-migrations")
