"""What every resource shares: the success envelope `{"data": ...}`, the page `{"data": [...],
"page": {...}}`, the one error envelope, the base models of request bodies and responses, and the
proto -> JSON helpers (RFC 3339 times)."""

from __future__ import annotations

import time
from functools import cache
from typing import Annotated, Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model
from pydantic.alias_generators import to_camel

from shop.lib.lines import PricedLine

# A time as the API writes it: RFC 3339 UTC ("2025-01-31T12:00:00.123Z").
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Text with something besides spaces in it and no control characters (what the services require).
NON_BLANK = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# An Idempotency-Key: 1..128 printable ASCII characters, not all spaces (shop.lib.idempotency).
IDEMPOTENCY_KEY_RULE = {"type": "string", "pattern": r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$", "maxLength": 128}


def omit_or(schema: dict[str, Any]) -> Any:
    """A PATCH field that may be left out but not sent as null: the document says `schema` (no
    null); the route still receives None to answer its own "must not be null" in the envelope."""
    return WithJsonSchema(schema)


class ApiModel(BaseModel):
    """Request bodies: camelCase, strict types, unknown fields refused (400 VALIDATION_ERROR)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)


class OutModel(BaseModel):
    """Response shapes: snake_case attributes, camelCase JSON. Mapping functions build camelCase
    dicts from protos; FastAPI validates them against the route's `response_model` and serializes
    them (pydantic's Rust core), so an answer cannot drift from its documented shape."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_alias=True, validate_by_name=True)


class PageInfo(OutModel):
    next_page_token: str | None = Field(description="Pass back as pageToken for the next page; null on the last.")
    total_size: int = Field(description="How many items the whole list holds.")


class ErrorBody(OutModel):
    code: str = Field(description="Stable, machine-readable (UPPER_SNAKE), e.g. PRODUCT_NOT_FOUND.")
    message: str = Field(description="Human text.")
    details: dict[str, Any] | None = Field(
        default=None, description="e.g. `fields: {fieldName: [messages]}` for VALIDATION_ERROR, `productIds`."
    )
    request_id: str = Field(description="The X-Request-ID of the request.")


class ErrorEnvelope(BaseModel):
    """The one error envelope every error status answers."""

    error: ErrorBody


@cache
def envelope(model: type[BaseModel]) -> type[BaseModel]:
    """`{"data": <model>}`, named `<Model>Envelope` in the OpenAPI document."""
    return create_model(f"{model.__name__}Envelope", __module__=model.__module__, data=(model, ...))


@cache
def page_of(model: type[BaseModel]) -> type[BaseModel]:
    """`{"data": [<model>], "page": PageInfo}`, named `<Model>Page`."""
    items = list[model]  # type: ignore[valid-type]  # a model class known at run time only
    return create_model(f"{model.__name__}Page", __module__=model.__module__, data=(items, ...), page=(PageInfo, ...))


def render(model: type[BaseModel], content: Any) -> bytes:
    """`content` validated against `model` and encoded as FastAPI would (by alias): for the few
    routes that keep the encoded answer (the product read cache) instead of returning the dict."""
    value = model.__pydantic_validator__.validate_python(content)
    return model.__pydantic_serializer__.to_json(value, by_alias=True)


def data(value: Any) -> dict[str, Any]:
    return {"data": value}


def page(items: list[Any], next_page_token: str, total_size: int) -> dict[str, Any]:
    return {"data": items, "page": {"nextPageToken": next_page_token or None, "totalSize": total_size}}


def line_json(line: PricedLine) -> dict[str, Any]:
    """A priced line of a cart or an order (`shop.lib.lines`), as both answers show it."""
    return {
        "productId": line.product_id,
        "sku": line.sku,
        "name": line.name,
        "unitPriceCents": line.unit_price_cents,
        "quantity": line.quantity,
        "lineTotalCents": line.line_total_cents,
    }


def rfc3339(stamp: Timestamp) -> str | None:
    """A protobuf Timestamp as RFC 3339 UTC, or None when unset: what `Timestamp.ToJsonString`
    writes (0, 3, 6 or 9 fraction digits), computed without its per-call overhead."""
    seconds, nanos = stamp.seconds, stamp.nanos
    if seconds == 0 and nanos == 0:
        return None
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{text}.{nanos // 1_000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    return False
