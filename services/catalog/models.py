"""Tables of the catalog service (its own database; no other service reads them)."""

from __future__ import annotations

from shop.lib.db import new_metadata
from sqlalchemy.orm import DeclarativeBase


class CatalogBase(DeclarativeBase):
    metadata = new_metadata()
