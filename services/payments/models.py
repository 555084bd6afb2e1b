"""Tables of the payments service (its own database; no other service reads them).

payments        one row per order (unique order_id): the charge and its running totals
refunds         one row per refund (unique request_id: the caller's idempotency key)
webhook_events  one row per provider event (unique provider + event_id): each is applied once
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import UTCDateTime, UUIDString, new_id, new_metadata, utcnow


class PaymentsBase(DeclarativeBase):
    metadata = new_metadata()


class Payment(PaymentsBase):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("order_id"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint("refunded_cents >= 0 AND refunded_cents <= captured_cents", name="refunds_within_captured"),
        Index("ix_payments_provider_reference", "provider", "provider_reference"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    # PENDING, SUCCEEDED, DECLINED, PARTIALLY_REFUNDED, REFUNDED (see domain.STATUS_RANK)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False, default="card")
    brand: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    last4: Mapped[str] = mapped_column(String(4), nullable=False, default="")
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    captured_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    currency_code: Mapped[str] = mapped_column(String(3), nullable=False)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    provider_reference: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    decline_code: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    # CreateCharge answered PAYMENT_DECLINED: the order was told nothing was taken (PAYMENT_FAILED),
    # so money the provider captures later is refunded automatically (a late capture).
    declined_answered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class Refund(PaymentsBase):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("request_id"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_refunds_payment_id", "payment_id"),
    )

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), nullable=False)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # PENDING (reserved, the provider has not answered), SUCCEEDED, FAILED (refused; reservation released)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    provider_reference: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class WebhookEvent(PaymentsBase):
    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(16), nullable=False)
    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(128), nullable=False)
    # The provider's creation time of the event.
    event_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    payment_id: Mapped[str | None] = mapped_column(UUIDString(), nullable=True)
    # applied | ignored (unknown type, or not one of our payments)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
