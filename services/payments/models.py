"""Tables of the payments service (its own database; no other service reads them)."""

from __future__ import annotations

from shop.lib.db import new_metadata
from sqlalchemy.orm import DeclarativeBase


class PaymentsBase(DeclarativeBase):
    metadata = new_metadata()
