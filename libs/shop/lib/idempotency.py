"""Idempotency keys (API.md: the `Idempotency-Key` header; `request_id` in the protos, AIP-155).

One rule for every key, wherever it is checked (gateway or service): 1..128 printable ASCII
characters (0x20-0x7E), surrounding whitespace trimmed (`clean_key`). Keys are scoped per user.

One fingerprint per request, whoever computes it: `fingerprint(value)` is the SHA-256 of the
canonical JSON of what was asked (sorted keys, no spaces); for a gRPC request the service computes
it from the message itself (`message_fingerprint`), without the key and fingerprint fields, so a
key gets the same fingerprint through the gateway or from an internal caller.

The replay rules are shared (`check_replay`, the `key_reused` / `in_progress` errors, the
`Idempotent-Replayed` header and its gRPC metadata); where a key is stored (orders' leased
`idempotency_keys` rows, cart's `cart_requests`, catalog's scoped request ids, payments' refund
request ids) stays each service's own, because the storage and its locking differ.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any, Literal, overload

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from shop.lib.errors import Aborted, Conflict, InvalidArgument, ShopError, ValidationError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 128
KEY_MESSAGE = f"must be 1..{MAX_KEY_LENGTH} printable ASCII characters"
_KEY = re.compile(rf"^[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}$")

# A replayed answer says so: the REST header, and the gRPC initial metadata that carries it.
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED_METADATA = (("idempotent-replayed", "true"),)

# The fields of a request message that are not part of what it asks for.
KEY_FIELDS = ("request_id", "request_fingerprint")


def is_valid_key(key: str) -> bool:
    return bool(_KEY.match(key))


@overload
def clean_key(value: str | None, *, field_name: str = ..., required: Literal[True]) -> str: ...
@overload
def clean_key(value: str | None, *, field_name: str = ..., required: bool = ...) -> str | None: ...
def clean_key(value: str | None, *, field_name: str = HEADER, required: bool = False) -> str | None:
    """The trimmed key; None when absent (None) and optional. Missing or blank but required: 400
    IDEMPOTENCY_KEY_REQUIRED; otherwise blank or malformed: 400 VALIDATION_ERROR on `field_name`."""
    key = (value or "").strip()
    if not key and required:
        raise key_required()
    if value is None:
        return None
    if not _KEY.match(key):
        raise ValidationError.single(field_name, KEY_MESSAGE)
    return key


def key_required() -> InvalidArgument:
    return InvalidArgument("The Idempotency-Key header is required.", code="IDEMPOTENCY_KEY_REQUIRED")


def scoped_key(user_id: str | None, key: str, length: int = 64) -> str:
    """A per-user name for a key where one column holds every user's keys: the same key from two
    users names two requests."""
    return hashlib.sha256(f"{user_id or ''}\n{key}".encode()).hexdigest()[:length]


# -- fingerprints ------------------------------------------------------------------------------


def fingerprint(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of what a request asks for."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def message_fingerprint(message: Message, exclude: Iterable[str] = KEY_FIELDS) -> str:
    """The fingerprint of a request message: its set fields (proto names), without the key fields."""
    body = MessageToDict(message, preserving_proto_field_name=True)
    for name in exclude:
        body.pop(name, None)
    return fingerprint(body)


# -- replays -----------------------------------------------------------------------------------


def key_reused(message: str = "This Idempotency-Key was used with a different request.") -> ShopError:
    """422 IDEMPOTENCY_KEY_REUSED (API.md): the same key with another body."""
    return Conflict(message, code="IDEMPOTENCY_KEY_REUSED")


def in_progress() -> ShopError:
    """409 REQUEST_IN_PROGRESS: the first request with this key is still running."""
    return Aborted("A request with this Idempotency-Key is still running; retry shortly.", code="REQUEST_IN_PROGRESS")


def check_replay(
    stored_fingerprint: str,
    request_fingerprint: str,
    *,
    stored_operation: str | None = None,
    operation: str | None = None,
    message: str | None = None,
) -> None:
    """A stored key may be replayed only by the same request (and the same operation)."""
    if stored_fingerprint != request_fingerprint or stored_operation != operation:
        raise key_reused(message) if message else key_reused()


def is_replayed(metadata: Iterable[tuple[str, Any]] | None) -> bool:
    """Whether a gRPC answer's initial metadata marks it as a replay."""
    marker = REPLAYED_METADATA[0]
    return any((key, value) == marker for key, value in metadata or ())
