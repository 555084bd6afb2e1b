"""What every resource shares: the success envelope `{"data": ...}`, the page `{"data": [...],
"page": {...}}`, the one error envelope, the base models of request bodies and responses, and the
proto -> JSON helpers (RFC 3339 times)."""

from __future__ import annotations

import time
from functools import cache
from typing import Annotated, Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, WithJsonSchema, create_model, field_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shop.lib.lines import PricedLine

# A time as the API writes it: RFC 3339 UTC ("2025-01-31T12:00:00.123Z").
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A UUID sent in a path, header or body: exactly 36 characters, because in some regex dialects
# (Python's, which generators use) `$` also matches before a final newline.
UUID_RULE: dict[str, Any] = {"format": "uuid", "pattern": UUID_PATTERN, "minLength": 36, "maxLength": 36}
# Text with something besides spaces in it and no control characters (what the services require).
NON_BLANK = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
# Text never holds NUL (PostgreSQL text cannot): every body refuses it, and documents it on each
# string the schema does not already pin with a pattern, a format or a list of values.
NO_NUL = r"^[^\x00]*$"
# An Idempotency-Key: 1..128 printable ASCII characters, not all spaces (shop.lib.idempotency).
IDEMPOTENCY_KEY_RULE = {"type": "string", "pattern": r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$", "maxLength": 128}


def omit_or(schema: dict[str, Any]) -> Any:
    """A PATCH field that may be left out but not sent as null: the document says `schema` (no
    null); the route still receives None to answer its own "must not be null" in the envelope."""
    return WithJsonSchema(schema)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _document_no_nul(schema: dict[str, Any]) -> None:
    pinned = {"pattern", "format", "enum", "const"}
    for prop in schema.get("properties", {}).values():
        if pinned & prop.keys():
            continue
        for option in prop.get("anyOf", [prop]):
            target = option.get("items", {}) if option.get("type") == "array" else option
            if target.get("type") == "string" and not pinned & target.keys():
                target["pattern"] = NO_NUL


class ApiModel(BaseModel):
    """Request bodies: camelCase, strict types, unknown fields refused, no NUL in any text (400
    VALIDATION_ERROR)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        _document_no_nul(schema)
        return schema

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any) -> Any:
        """A JSON number with no fractional part is an integer, as JSON Schema's `integer` reads it
        (1.0 is one): no body takes a fraction, and strict types refuse a string or a boolean."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


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
