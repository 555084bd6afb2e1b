from shop.lib.migrations import run_env

from services.catalog.models import CatalogBase

run_env(CatalogBase.metadata, lock_name="catalog-migrations")
