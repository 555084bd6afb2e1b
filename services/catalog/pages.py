"""The sort keys a product page token carries, one type per sort (the token itself, its signature
and the one INVALID_PAGE_TOKEN error are shop.lib.pagination's `encode_after`/`decode_after`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shop.lib.pagination import aware_datetime


def parse_sort_key(sort: str, raw: Any, *, postgres: bool) -> Any:
    """The sort key back in its Python type; ValueError/TypeError (INVALID_PAGE_TOKEN to the
    caller through `decode_after`) when it is not one of this sort."""
    if sort == "newest":
        return aware_datetime(raw)
    if sort in ("price", "-price"):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("not an int")
        return raw
    if sort == "rating":
        return float(raw)
    if sort == "name":
        if not isinstance(raw, str):
            raise ValueError("not a string")
        return raw
    if sort == "relevance":
        if not postgres:
            return int(raw)
        try:
            return Decimal(raw)
        except InvalidOperation:  # an ArithmeticError, not a ValueError
            raise ValueError("not a rank") from None
    raise ValueError(f"unknown sort {sort!r}")


def dump_sort_key(value: Any) -> Any:
    """A sort key as JSON carries it (a Decimal rank as text; a datetime as ISO text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
