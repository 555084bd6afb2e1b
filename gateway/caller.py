"""Who is asking, parsed once per request and in one place: the client's address (the trusted-proxy
rule), whether its connection is HTTPS, and the bearer token of the Authorization header.

`RequestContextMiddleware` computes the address and the scheme from the ASGI scope and stores them
in `scope["state"]`; rate limits, session records (ClientInfo.ip) and cookies all read them from
there, so no two parts of the gateway can disagree about a client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (lower-case name), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def peer_address(scope: Scope) -> str:
    return (scope.get("client") or ("unknown", 0))[0]


def client_ip(scope: Scope, is_trusted_proxy: Callable[[str], bool]) -> str:
    """The socket peer, or — only when the peer is a trusted proxy — the nearest address in
    X-Forwarded-For that is not itself a trusted proxy. Anything unparsable in the chain stops the
    walk at the peer: a client cannot pick its identity through a trusted proxy either."""
    peer = peer_address(scope)
    if not is_trusted_proxy(peer):
        return peer
    forwarded = header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    for candidate in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return peer
        if not is_trusted_proxy(candidate):
            return candidate
    return peer


def is_https(scope: Scope, is_trusted_proxy: Callable[[str], bool]) -> bool:
    """The client's connection is HTTPS: directly, or as told by a trusted proxy."""
    if scope.get("scheme") == "https":
        return True
    return is_trusted_proxy(peer_address(scope)) and header(scope, b"x-forwarded-proto") == "https"


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value; None when it is anything else."""
    scheme, _, token = (value or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
