"""Catalog (API.md "Catalog"): the Product, Category, Review and stock shapes, built here from
their protos, and the request bodies of the catalog routes."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, field_validator

from gateway.schemas.common import (
    NON_BLANK,
    ApiModel,
    DateTime,
    OutModel,
    Uuid,
    has_surrogate,
    omit_or,
    rfc3339,
)
from shop.catalog.v1 import catalog_pb2
from shop.lib.enums import EnumNames

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# The catalog's rules (services/catalog/domain.py): one stock adjustment moves at most this many
# units; a category slug is lower-case letters and digits in hyphen-separated groups.
MAX_STOCK_DELTA = 1_000_000
SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
PRODUCT_STATUSES = EnumNames(catalog_pb2.ProductStatus)
SORTS = {
    "relevance": catalog_pb2.PRODUCT_SORT_RELEVANCE,
    "newest": catalog_pb2.PRODUCT_SORT_NEWEST,
    "price": catalog_pb2.PRODUCT_SORT_PRICE_ASC,
    "-price": catalog_pb2.PRODUCT_SORT_PRICE_DESC,
    "rating": catalog_pb2.PRODUCT_SORT_RATING,
    "name": catalog_pb2.PRODUCT_SORT_NAME,
}
SortName = Literal["relevance", "newest", "price", "-price", "rating", "name"]


# -- responses ------------------------------------------------------------------------------------


class Rating(OutModel):
    average: float = Field(description="Mean of the review ratings, 2 decimals; 0 without reviews.")
    count: int


class Product(OutModel):
    id: Uuid
    sku: str
    name: str
    description: str
    price_cents: int
    compare_at_price_cents: int | None = Field(description="The 'was' price; null when none.")
    currency: str
    category_slug: str
    brand: str | None
    images: list[str]
    stock: int
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"]
    seller_id: str | None = Field(description="The owning seller; null for shop-owned products.")
    rating: Rating
    created_at: DateTime
    updated_at: DateTime


class Category(OutModel):
    slug: str
    name: str
    parent_slug: str | None
    product_count: int = Field(description="ACTIVE products in it and its subcategories.")


class Review(OutModel):
    id: Uuid
    product_id: Uuid
    user_id: Uuid
    rating: int
    title: str
    body: str
    verified_purchase: bool = Field(description="The user bought the product in a paid order.")
    created_at: DateTime


class StockLevel(OutModel):
    stock: int


def product_json(product: catalog_pb2.Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "priceCents": product.price_cents,
        "compareAtPriceCents": product.compare_at_price_cents or None,
        "currency": product.currency_code,
        "categorySlug": product.category_slug,
        "brand": product.brand or None,
        "images": list(product.images),
        "stock": product.stock,
        "status": PRODUCT_STATUSES.name(product.status),
        "sellerId": product.seller_id or None,
        "rating": {"average": round(product.rating_average, 2), "count": product.rating_count},
        "createdAt": rfc3339(product.create_time),
        "updatedAt": rfc3339(product.update_time),
    }


def product_etag(product: catalog_pb2.Product) -> str:
    """The product's version: its last change (µs), as a strong entity tag."""
    stamp = product.update_time
    micros = stamp.seconds * 1_000_000 + stamp.nanos // 1000
    return '"' + base64.urlsafe_b64encode(micros.to_bytes(8, "big")).decode().rstrip("=") + '"'


def etag_version(etag: str) -> Timestamp | None:
    """The version a `product_etag` names; None when the text is no tag of ours (it then matches
    no product: a weak `W/` tag never does under If-Match's strong comparison)."""
    text = etag.strip()
    if len(text) < 3 or text[0] != '"' or text[-1] != '"':
        return None
    try:
        raw = base64.urlsafe_b64decode(text[1:-1] + "=" * (-len(text[1:-1]) % 4))
    except ValueError:
        return None
    if len(raw) != 8:
        return None
    micros = int.from_bytes(raw, "big")
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def category_json(category: catalog_pb2.Category) -> dict[str, Any]:
    return {
        "slug": category.slug,
        "name": category.name,
        "parentSlug": category.parent_slug or None,
        "productCount": category.product_count,
    }


def review_json(review: catalog_pb2.Review) -> dict[str, Any]:
    return {
        "id": review.id,
        "productId": review.product_id,
        "userId": review.user_id,
        "rating": review.rating,
        "title": review.title,
        "body": review.body,
        "verifiedPurchase": review.verified_purchase,
        "createdAt": rfc3339(review.create_time),
    }


# -- request bodies -------------------------------------------------------------------------------


class CatalogBody(ApiModel):
    """JSON may carry lone UTF-16 surrogates (`"\\ud800"`) that no UTF-8 string can hold: 400."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_surrogates(cls, value: Any) -> Any:
        if has_surrogate(value):
            raise ValueError("is not valid Unicode text")
        return value


class ProductCreateBody(CatalogBody):
    sku: str = Field(description="Unique; letters, digits, '.', '_', '-'; at most 64 characters.")
    name: str = Field(description="1..200 characters.")
    description: str = Field(default="", description="At most 5000 characters.")
    price_cents: int = Field(
        ge=-INT64_MAX, le=INT64_MAX, description="> 0, in minor units.", json_schema_extra={"minimum": 1}
    )
    compare_at_price_cents: int | None = Field(
        default=None,
        ge=-INT64_MAX,
        le=INT64_MAX,
        description="Greater than priceCents when given.",
        json_schema_extra={"minimum": 1},
    )
    currency: str = Field(description="ISO 4217, 3 upper-case letters.")
    category_slug: str = Field(description="An existing category.")
    brand: str | None = Field(default=None, description="At most 100 characters.")
    images: list[str] = Field(default_factory=list, max_length=100, description="At most 10 http(s) URLs.")
    stock: int = Field(ge=-INT32_MAX, le=INT32_MAX, description=">= 0.", json_schema_extra={"minimum": 0})
    status: Literal["ACTIVE", "DRAFT"] = Field(default="ACTIVE")


class ProductUpdateBody(CatalogBody):
    """Every field optional; only the fields sent change. `compareAtPriceCents: null`,
    `brand: null` and `description: null` clear them; the others may be left out, not null.
    Stock changes go through stock adjustments."""

    sku: Annotated[str | None, omit_or({"type": "string"})] = None
    name: Annotated[str | None, omit_or({"type": "string"})] = None
    description: str | None = None
    price_cents: Annotated[int | None, omit_or({"type": "integer", "minimum": 1, "maximum": INT64_MAX})] = Field(
        default=None, ge=-INT64_MAX, le=INT64_MAX
    )
    compare_at_price_cents: int | None = Field(
        default=None, ge=-INT64_MAX, le=INT64_MAX, json_schema_extra={"minimum": 1}
    )
    currency: Annotated[str | None, omit_or({"type": "string"})] = None
    category_slug: Annotated[str | None, omit_or({"type": "string"})] = None
    brand: str | None = None
    images: Annotated[list[str] | None, omit_or({"type": "array", "items": {"type": "string"}, "maxItems": 10})] = (
        Field(default=None, max_length=100)
    )
    status: Annotated[Literal["ACTIVE", "DRAFT"] | None, omit_or({"enum": ["ACTIVE", "DRAFT"]})] = None


class StockAdjustmentBody(CatalogBody):
    delta: int = Field(
        ge=-MAX_STOCK_DELTA,
        le=MAX_STOCK_DELTA,
        description=f"Non-zero change of the stock, at most {MAX_STOCK_DELTA:,} units either way.",
        json_schema_extra={"not": {"const": 0}},
    )
    reason: str = Field(
        description="Why (1..200 characters), kept in the audit trail.",
        json_schema_extra={"maxLength": 200, "pattern": NON_BLANK},
    )


class CategoryCreateBody(CatalogBody):
    slug: str = Field(
        description="Lower-case letters and digits in groups separated by single hyphens, at most 64.",
        json_schema_extra={"pattern": SLUG_PATTERN, "maxLength": 64},
    )
    name: str = Field(
        description="1..100 characters, no control characters.",
        json_schema_extra={"maxLength": 100, "pattern": NON_BLANK},
    )
    parent_slug: str | None = Field(
        default=None,
        description="The slug of an existing category (400 when there is none); null or left out for a top one.",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": SLUG_PATTERN, "maxLength": 64}, {"type": "null"}]},
    )


class ReviewCreateBody(CatalogBody):
    rating: int = Field(
        ge=-INT32_MAX, le=INT32_MAX, description="1..5.", json_schema_extra={"minimum": 1, "maximum": 5}
    )
    title: str = Field(default="", description="At most 120 characters.", json_schema_extra={"maxLength": 120})
    body: str = Field(default="", description="At most 5000 characters.", json_schema_extra={"maxLength": 5000})
