"""Every conversion between the catalog's protos and its rows, and the enum tables: requests to the
values the use cases take, rows (ORM objects or lean rows with the same attributes) to protos."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.catalog.domain import listing as listing_rules
from services.catalog.domain import products as product_rules
from services.catalog.repository.stock import ReservationView
from shop.catalog.v1 import catalog_pb2
from shop.lib.db import to_timestamp
from shop.lib.enums import EnumNames
from shop.lib.errors import ValidationError

SORT_BY_ENUM = {
    catalog_pb2.PRODUCT_SORT_UNSPECIFIED: None,
    catalog_pb2.PRODUCT_SORT_RELEVANCE: "relevance",
    catalog_pb2.PRODUCT_SORT_NEWEST: "newest",
    catalog_pb2.PRODUCT_SORT_PRICE_ASC: "price",
    catalog_pb2.PRODUCT_SORT_PRICE_DESC: "-price",
    catalog_pb2.PRODUCT_SORT_RATING: "rating",
    catalog_pb2.PRODUCT_SORT_NAME: "name",
}
# Proto enum value <-> the status stored in the tables (PRODUCT_STATUS_ACTIVE <-> "ACTIVE").
PRODUCT_STATUSES = EnumNames(catalog_pb2.ProductStatus)
RESERVATION_STATUSES = EnumNames(catalog_pb2.ReservationStatus)


# -- requests -> values ----------------------------------------------------------------------------


def status_field(value: int, *, creating: bool) -> str | None:
    if value == catalog_pb2.PRODUCT_STATUS_UNSPECIFIED:
        return product_rules.ACTIVE if creating else None
    try:
        return PRODUCT_STATUSES.name(value)
    except ValueError:
        raise ValidationError.single("status", "is not a known status") from None


def product_query(request: catalog_pb2.ListProductsRequest) -> listing_rules.ProductQuery:
    return listing_rules.product_query(
        query=request.query,
        category_slug=request.category_slug,
        brand=request.brand,
        min_price_cents=request.min_price_cents if request.HasField("min_price_cents") else None,
        max_price_cents=request.max_price_cents if request.HasField("max_price_cents") else None,
        in_stock_only=request.in_stock_only,
        sort=SORT_BY_ENUM.get(request.sort, "invalid"),
    )


def new_product_fields(request: catalog_pb2.CreateProductRequest) -> dict[str, Any]:
    """Every field of a new product (not yet validated)."""
    return {
        "sku": request.sku,
        "name": request.name,
        "description": request.description,
        "price_cents": request.price_cents,
        "compare_at_price_cents": request.compare_at_price_cents or None,
        "currency": request.currency_code,
        "category_slug": request.category_slug,
        "brand": request.brand,
        "images": list(request.images),
        "stock": request.stock,
        "status": status_field(request.status, creating=True),
    }


def product_changes(request: catalog_pb2.UpdateProductRequest) -> dict[str, Any]:
    """The fields an update sets (not yet validated); absent fields stay as they are."""
    raw: dict[str, Any] = {}
    for name in ("sku", "name", "description", "price_cents", "brand", "category_slug"):
        if request.HasField(name):
            raw[name] = getattr(request, name)
    if request.HasField("currency_code"):
        raw["currency"] = request.currency_code
    if request.HasField("compare_at_price_cents"):
        raw["compare_at_price_cents"] = request.compare_at_price_cents or None  # 0 clears it
    if request.update_images:
        raw["images"] = list(request.images)
    status = status_field(request.status, creating=False)
    if status is not None:
        raw["status"] = status
    return raw


def expected_update_time(request: catalog_pb2.UpdateProductRequest) -> datetime | None:
    """The version an update was made against (If-Match), or None."""
    if not request.HasField("expected_update_time"):
        return None
    return request.expected_update_time.ToDatetime(tzinfo=UTC)


# -- rows -> protos --------------------------------------------------------------------------------


def product_proto(product: Any) -> catalog_pb2.Product:
    """A product (ORM object or lean row with the columns of `PRODUCT_COLUMNS`)."""
    return catalog_pb2.Product(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description or "",
        price_cents=product.price_cents,
        compare_at_price_cents=product.compare_at_price_cents or 0,
        currency_code=product.currency,
        category_slug=product.category_slug,
        brand=product.brand or "",
        images=list(product.images or []),
        stock=product.stock,
        status=PRODUCT_STATUSES.value(product.status),
        seller_id=product.seller_id or "",
        rating_average=float(product.rating_average or 0.0),
        rating_count=product.rating_count or 0,
        create_time=to_timestamp(product.created_at),
        update_time=to_timestamp(product.updated_at),
    )


def category_proto(category: Any, count: int) -> catalog_pb2.Category:
    return catalog_pb2.Category(
        slug=category.slug, name=category.name, parent_slug=category.parent_slug or "", product_count=count
    )


def review_proto(review: Any) -> catalog_pb2.Review:
    return catalog_pb2.Review(
        id=review.id,
        product_id=review.product_id,
        user_id=review.user_id,
        rating=review.rating,
        title=review.title or "",
        body=review.body or "",
        verified_purchase=review.verified_purchase,
        create_time=to_timestamp(review.created_at),
    )


def wishlist_item_proto(product: Any, added_at) -> catalog_pb2.WishlistItem:
    return catalog_pb2.WishlistItem(product=product_proto(product), add_time=to_timestamp(added_at))


def reservation_proto(view: ReservationView) -> catalog_pb2.Reservation:
    return catalog_pb2.Reservation(
        id=view.id,
        status=RESERVATION_STATUSES.value(view.status),
        lines=[catalog_pb2.StockLine(product_id=p, quantity=q) for p, q in view.lines],
        expire_time=to_timestamp(view.expires_at),
        priced_lines=[catalog_pb2.ReservedLine(**line.values()) for line in view.priced_lines],
    )
