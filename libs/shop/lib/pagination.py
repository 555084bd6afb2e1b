"""Keyset pagination (AIP-158): page sizes, and opaque, tamper-evident page tokens.

A token carries the last row's sort key and id, bound to a fingerprint of the query's filters
(`fingerprint(**filters)`) and signed with SHOP_PAGE_TOKEN_SECRET: a forged token, one from another
query, or one whose key does not parse is the one error, 400 INVALID_PAGE_TOKEN
(`invalid_page_token()`). A list handler is:

    query = fingerprint(kind="orders", status=status)
    after = tokens.decode_after(request.page_token, query, parse_key=aware_datetime)  # None: first page
    rows = ...keyset query after (key, id), size + 1 rows...
    next_token = tokens.encode_after(last.created_at, last.id, query) if more else ""

`encode_after`/`decode_after` take the position's field names (`key_field="k", id_field="id"` by
default) so a list keeps the token format it has already given out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shop.lib.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int) -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if requested < 1 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"pageSize must be between 1 and {MAX_PAGE_SIZE}.",
            fields={"pageSize": [f"must be between 1 and {MAX_PAGE_SIZE}"]},
        )
    return requested


def invalid_page_token() -> InvalidArgument:
    """The one error for a page token that is not valid for this query."""
    return InvalidArgument(
        "The page token is not valid for this query.",
        code="INVALID_PAGE_TOKEN",
        fields={"pageToken": ["is not valid for this query"]},
    )


def aware_datetime(raw: Any) -> datetime:
    """A timestamp sort key back from its ISO text (ValueError unless timezone-aware)."""
    if not isinstance(raw, str):
        raise ValueError("not a timestamp")
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError("naive timestamp")
    return value


def fingerprint(**filters: Any) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()[:32]

    def encode(self, position: dict[str, Any], query: str) -> str:
        payload = json.dumps({"p": position, "q": query}, separators=(",", ":"), default=str).encode()
        raw = payload + b"." + self._sign(payload).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, token: str, query: str) -> dict[str, Any] | None:
        """The position a token carries; None for the first page (empty token)."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, _, signature = raw.rpartition(b".")
            if not payload or not hmac.compare_digest(self._sign(payload).encode(), signature):
                raise ValueError("bad signature")
            data = json.loads(payload)
            if data.get("q") != query or not isinstance(data.get("p"), dict):
                raise ValueError("token of another query")
            return data["p"]
        except (ValueError, TypeError, UnicodeDecodeError):
            raise invalid_page_token() from None

    def encode_after(
        self, sort_key: Any, row_id: str, query: str, *, key_field: str = "k", id_field: str = "id"
    ) -> str:
        """The token of the page after the row (`sort_key`, `row_id`); a datetime is kept as ISO text."""
        value = sort_key.isoformat() if isinstance(sort_key, datetime) else sort_key
        return self.encode({key_field: value, id_field: row_id}, query)

    def decode_after(
        self,
        token: str,
        query: str,
        *,
        parse_key: Callable[[Any], Any] = lambda raw: raw,
        key_field: str = "k",
        id_field: str = "id",
    ) -> tuple[Any, str] | None:
        """(sort key, row id) after which the page starts; None for the first page. A key that
        `parse_key` refuses (ValueError, TypeError) is INVALID_PAGE_TOKEN too."""
        position = self.decode(token, query)
        if position is None:
            return None
        try:
            row_id = position[id_field]
            if not isinstance(row_id, str):
                raise TypeError("id is not a string")
            return parse_key(position[key_field]), row_id
        except (KeyError, TypeError, ValueError):
            raise invalid_page_token() from None
