"""Tables of the cart service (its own database; no other service reads them).

A cart belongs to exactly one owner: a user (`user_id`) or a guest session (`session_id`).
Lines never store a price: the catalog is the only truth for prices and stock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import UTCDateTime, UUIDString, new_id, new_metadata, utcnow


class CartBase(DeclarativeBase):
    metadata = new_metadata()


class Cart(CartBase):
    __tablename__ = "carts"
    __table_args__ = (CheckConstraint("(user_id IS NULL) <> (session_id IS NULL)", name="one_owner"),)

    # Derived from the owner (domain.cart_id_for), so a cart has the same id before and after it
    # is first written, and get-or-create is one INSERT ... ON CONFLICT.
    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(UUIDString(), unique=True)
    session_id: Mapped[str | None] = mapped_column(UUIDString(), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    # Last change of the cart or its lines (guest carts expire relative to it).
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)


class CartItem(CartBase):
    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("cart_id", "product_id"),
        CheckConstraint("quantity >= 1 AND quantity <= 100", name="quantity_range"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    cart_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("carts.id", ondelete="CASCADE"), nullable=False)
    product_id: Mapped[str] = mapped_column(UUIDString(), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class CartRequest(CartBase):
    """An idempotency key of a successful AddCartItem (AIP-155), scoped to its cart."""

    __tablename__ = "cart_requests"
    __table_args__ = (UniqueConstraint("cart_id", "request_id"),)

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    cart_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("carts.id", ondelete="CASCADE"), nullable=False)
    # The Idempotency-Key (shop.lib.idempotency: 1..128 printable ASCII).
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # sha256 of what was asked (product and quantity): the same key with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)


class CartCheckout(CartBase):
    """The lines a checkout took from a cart (CheckoutCart), keyed by the checkout's id, so a
    repeat returns the same lines and RestoreCart can put them back. No foreign key to `carts`:
    the record outlives the cart's lines and is purged after SHOP_CHECKOUT_TTL_DAYS. An unknown id
    given to RestoreCart is recorded as `restored` with no owner and no lines."""

    __tablename__ = "cart_checkouts"
    __table_args__ = (
        CheckConstraint("state IN ('taken', 'restored')", name="state"),
        CheckConstraint("user_id IS NULL OR session_id IS NULL", name="one_owner"),
    )

    checkout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cart_id: Mapped[str | None] = mapped_column(UUIDString())
    user_id: Mapped[str | None] = mapped_column(UUIDString())
    session_id: Mapped[str | None] = mapped_column(UUIDString())
    # [{"product_id": ..., "quantity": ...}, ...] in the cart's order.
    lines: Mapped[list] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False, index=True)
