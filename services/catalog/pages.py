"""The keyset page tokens of the catalog's two listings (products, reviews): what a token carries,
read back and checked. Kept as they were; the shared pagination kit of shop.lib replaces them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shop.lib.errors import InvalidArgument
from shop.lib.pagination import PageTokens


def invalid_page_token() -> InvalidArgument:
    return InvalidArgument(
        "The page token is not valid for this query.",
        code="INVALID_PAGE_TOKEN",
        fields={"pageToken": ["is not valid for this query"]},
    )


def parse_sort_key(sort: str, raw: Any, *, postgres: bool) -> Any:
    """The sort key a page token carries, back in its Python type (else INVALID_PAGE_TOKEN)."""
    try:
        if sort == "newest":
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError("naive")
            return value
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
            return Decimal(raw) if postgres else int(raw)
    except (ValueError, TypeError, InvalidOperation):
        raise invalid_page_token() from None
    raise invalid_page_token()


def dump_sort_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def product_position(tokens: PageTokens, token: str, query_fp: str, sort: str, *, postgres: bool
                     ) -> tuple[Any, str] | None:
    """(sort key, id) after which a product page starts; None for the first page."""
    position = tokens.decode(token, query_fp)
    if position is None:
        return None
    if not isinstance(position.get("id"), str) or "k" not in position:
        raise invalid_page_token()
    return parse_sort_key(sort, position["k"], postgres=postgres), position["id"]


def review_position(tokens: PageTokens, token: str, query_fp: str) -> tuple[datetime, str] | None:
    """(created_at, id) after which a review page starts; None for the first page."""
    position = tokens.decode(token, query_fp)
    if position is None:
        return None
    try:
        after = (datetime.fromisoformat(position["t"]), str(position["id"]))
    except (KeyError, TypeError, ValueError):
        raise invalid_page_token() from None
    if after[0].tzinfo is None:
        raise invalid_page_token()
    return after
