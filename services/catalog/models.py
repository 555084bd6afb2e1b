"""Tables of the catalog service (its own database; no other service reads them).

On PostgreSQL the migration also adds `products.search_vector` (a generated tsvector column,
GIN-indexed) for full-text search; it is deliberately not declared here because SQLite has no
equivalent (search there falls back to LIKE over `search_text`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import UTCDateTime, UUIDString, new_id, new_metadata, utcnow


class CatalogBase(DeclarativeBase):
    metadata = new_metadata()


class Category(CatalogBase):
    __tablename__ = "categories"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_slug: Mapped[str | None] = mapped_column(String(64), ForeignKey("categories.slug"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Product(CatalogBase):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_cents > 0", name="price_positive"),
        Index("ix_products_status_created", "status", "created_at", "id"),
        Index("ix_products_status_price", "status", "price_cents", "id"),
        Index("ix_products_status_rating", "status", "rating_average", "id"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int] = mapped_column(BigInteger)
    compare_at_price_cents: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    category_slug: Mapped[str] = mapped_column(String(64), ForeignKey("categories.slug"), index=True)
    brand: Mapped[str | None] = mapped_column(String(100), index=True)
    images: Mapped[list] = mapped_column(JSON, default=list)
    stock: Mapped[int] = mapped_column(Integer, default=0)
    # ACTIVE | DRAFT | ARCHIVED
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    seller_id: Mapped[str | None] = mapped_column(UUIDString(), index=True)
    rating_average: Mapped[float] = mapped_column(Float, default=0.0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    # Words the search matches besides name and description: brand, category slug and names.
    search_text: Mapped[str] = mapped_column(Text, default="")
    # AIP-155: a repeated CreateProduct with the same request id returns this product.
    create_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StockAdjustment(CatalogBase):
    """Audit trail of manual stock changes (idempotent by request id)."""

    __tablename__ = "stock_adjustments"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    product_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("products.id"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(UUIDString())
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stock_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Reservation(CatalogBase):
    """A stock reservation (id = the caller's key, e.g. the order id). The primary key makes
    ReserveStock idempotent: a repeat can never reserve twice."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status_expires", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # RESERVED | COMMITTED | RELEASED | RESTOCKED
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReservationLine(CatalogBase):
    """A reserved line with the product as it was when it was reserved (the snapshot columns are
    NULL for lines reserved before they existed: answers fill them from the product row)."""

    __tablename__ = "reservation_lines"

    reservation_id: Mapped[str] = mapped_column(String(64), ForeignKey("reservations.id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("products.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    unit_price_cents: Mapped[int | None] = mapped_column(BigInteger)
    currency_code: Mapped[str | None] = mapped_column(String(3))


class Review(CatalogBase):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("product_id", "user_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_product_created", "product_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    product_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("products.id"))
    user_id: Mapped[str] = mapped_column(UUIDString())
    rating: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(120), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    verified_purchase: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Purchase(CatalogBase):
    """Who bought what (from RecordPurchases): reviews of these get verifiedPurchase."""

    __tablename__ = "purchases"

    user_id: Mapped[str] = mapped_column(UUIDString(), primary_key=True)
    product_id: Mapped[str] = mapped_column(UUIDString(), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WishlistItem(CatalogBase):
    __tablename__ = "wishlist_items"
    __table_args__ = (Index("ix_wishlist_items_user_created", "user_id", "created_at"),)

    user_id: Mapped[str] = mapped_column(UUIDString(), primary_key=True)
    product_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("products.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
