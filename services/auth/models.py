"""Tables of the auth service (its own database; no other service reads them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import UTCDateTime, UUIDString, new_id, new_metadata, utcnow


class AuthBase(DeclarativeBase):
    metadata = new_metadata()


class User(AuthBase):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    # Trimmed and lower-cased on the way in; unique.
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    first_name: Mapped[str] = mapped_column(String(50), nullable=False)
    last_name: Mapped[str] = mapped_column(String(50), nullable=False)
    phone: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    # 'CUSTOMER' | 'SELLER' | 'ADMIN'
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="CUSTOMER")
    # 'ACTIVE' | 'SUSPENDED' | 'DEACTIVATED'
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="ACTIVE")
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Base32 TOTP secret once enabled; the pending one between setup and enable.
    mfa_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mfa_pending_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The last TOTP time-step accepted for this user: no code is accepted twice.
    mfa_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)


class AuthSession(AuthBase):
    """A login: refresh tokens rotate inside it; access tokens carry its id as `sid`."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # Sliding: pushed forward on every refresh.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    revoke_reason: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    user_agent: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    ip: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class RefreshToken(AuthBase):
    """Only the SHA-256 of an opaque refresh token is stored; `used` flips once (rotation)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("sessions.id"), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    used: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class LoginAttempt(AuthBase):
    """Failed (or in-flight) logins per email, for the lockout window; shared by every replica."""

    __tablename__ = "login_attempts"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    __table_args__ = (Index("ix_login_attempts_email_attempted_at", "email", "attempted_at"),)


class OneTimeToken(AuthBase):
    """Password-reset and email-verification tokens: only the hash is stored; single use."""

    __tablename__ = "one_time_tokens"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("users.id"), nullable=False, index=True)
    # 'password_reset' | 'email_verification'
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Set when used, or when a newer token of the same purpose voids it.
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RecoveryCode(AuthBase):
    """MFA recovery codes, stored as SHA-256 (each is 80 random bits, so a fast hash suffices); single use."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("users.id"), nullable=False, index=True)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Address(AuthBase):
    __tablename__ = "addresses"

    id: Mapped[str] = mapped_column(UUIDString(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDString(), ForeignKey("users.id"), nullable=False, index=True)
    label: Mapped[str] = mapped_column(String(50), nullable=False)
    first_name: Mapped[str] = mapped_column(String(50), nullable=False)
    last_name: Mapped[str] = mapped_column(String(50), nullable=False)
    line1: Mapped[str] = mapped_column(String(200), nullable=False)
    line2: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    postal_code: Mapped[str] = mapped_column(String(20), nullable=False)
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    phone: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        # At most one default address per user, enforced by the database on both backends.
        Index(
            "uq_addresses_one_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )
