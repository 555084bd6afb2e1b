"""Tables of the orders service (its own database; no other service reads them).

orders            one row per checkout: status (public), stage (saga position), totals, snapshot
                  of the address and payment, saga lease, outbox lock
order_items       the priced lines (catalog prices snapshotted at checkout)
order_history     one row per status change
outbox            side effects owed after a state change (written in the same transaction)
idempotency_keys  one row per (user, Idempotency-Key): fingerprint, state, stored final response
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import UTCDateTime, UUIDString, new_id, new_metadata, utcnow


class OrdersBase(DeclarativeBase):
    metadata = new_metadata()


class Order(OrdersBase):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("number"),
        UniqueConstraint("user_id", "idempotency_key"),
        Index("ix_orders_user_created", "user_id", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_stage_lease", "stage", "lease_until"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(32), nullable=False)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    customer_email: Mapped[str] = mapped_column(String(320), nullable=False, default="")
    idempotency_key: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    # new | priced | reserved | done (see domain.Stage)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    # Why an order ended without being paid (INSUFFICIENT_STOCK, PAYMENT_DECLINED, ...).
    failure_code: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    subtotal_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    tax_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    shipping_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="USD")
    shipping_address: Mapped[dict] = mapped_column(JSON, nullable=False)
    payment_method: Mapped[str] = mapped_column(String(16), nullable=False, default="card")
    # Kept only until the charge has a final outcome (recovery may have to charge again).
    payment_token: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    payment_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    payment_status: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    payment_brand: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    payment_last4: Mapped[str] = mapped_column(String(4), nullable=False, default="")
    captured_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # none | reserved | committed | released | restocked (as far as this service knows)
    reservation_state: Mapped[str] = mapped_column(String(16), nullable=False, default="none")
    carrier: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    tracking_number: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    # The saga driver owns the order until then (renewed at every step); recovery takes over after.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An outbox relay owns this order's outbox rows until then.
    outbox_lock_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class OrderItem(OrdersBase):
    __tablename__ = "order_items"
    __table_args__ = (Index("ix_order_items_order", "order_id", "position"),)

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    product_id: Mapped[str] = mapped_column(String(64), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    name: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    unit_price_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    line_total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)


class OrderHistory(OrdersBase):
    __tablename__ = "order_history"
    __table_args__ = (Index("ix_order_history_order", "order_id", "seq"),)

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class OutboxEntry(OrdersBase):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_order", "order_id", "seq"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    # Per-order sequence: an order's rows run in this order.
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    # commit_reservation | release_reservation | return_stock | clear_cart | record_purchases |
    # refund | email
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # pending | done | dead (gave up after outbox_max_attempts, or a permanent error)
    state: Mapped[str] = mapped_column(String(8), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class IdempotencyKey(OrdersBase):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key"),
        Index("ix_idempotency_keys_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    # create_order | refund
    operation: Mapped[str] = mapped_column(String(32), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # in_progress | completed
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    # Who works on it until then (a replay after it may take over).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The final response: the serialized response message (success) or the error (gRPC code name,
    # public code, message, details). The table still has a dead `response_status` column, nullable
    # since migration d41f0c2a9b13, dropped in the next release (README "Pending contract migrations").
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
