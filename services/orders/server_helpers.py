"""Small gRPC-side helpers of the orders servicer."""

from __future__ import annotations

REPLAYED_METADATA = (("idempotent-replayed", "true"),)


def bearer_of(context) -> str | None:
    """The caller's access token (forwarded to auth to read the customer's email)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
