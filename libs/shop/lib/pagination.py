"""Opaque, tamper-evident page tokens (AIP-158) for keyset pagination.

A token carries the last row's sort key and id, bound to a fingerprint of the query's filters
and signed with SHOP_PAGE_TOKEN_SECRET: a forged token, or one from another query, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
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
            raise InvalidArgument(
                "The page token is not valid for this query.",
                code="INVALID_PAGE_TOKEN",
                fields={"pageToken": ["is not valid for this query"]},
            ) from None
