"""Conversions between the auth service's protos and its rows/results, all in one place: users,
sessions, tokens, addresses, revocations, and the role/status enum names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from services.auth.models import Address, AuthSession, User
from shop.auth.v1 import auth_pb2
from shop.lib.db import to_timestamp
from shop.lib.enums import EnumNames

if TYPE_CHECKING:
    from services.auth.sessions import IssuedTokens

# The address attributes a request may carry (Address message, UpdateAddressRequest fields).
ADDRESS_ATTRIBUTES = (
    "label",
    "first_name",
    "last_name",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
    "country",
    "phone",
)
PROFILE_ATTRIBUTES = ("first_name", "last_name", "phone")


# -- enum names (stored as the enum's name without its prefix) ------------------------------------

# `ROLES.optional(value)`: the stored name, None for the unspecified value (no filter / no change).
ROLES = EnumNames(auth_pb2.Role)
USER_STATUSES = EnumNames(auth_pb2.UserStatus)


# -- requests -> values ---------------------------------------------------------------------------


def given_fields(message, names: Sequence[str]) -> dict[str, str]:
    """The optional fields the request really set (proto3 `optional`): a patch."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def address_fields(address: auth_pb2.Address) -> dict[str, str]:
    """Every attribute of a full address (CreateAddress)."""
    return {name: getattr(address, name) for name in ADDRESS_ATTRIBUTES}


# -- rows -> protos -------------------------------------------------------------------------------


def user_proto(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        phone=user.phone,
        role=ROLES.value(user.role),
        status=USER_STATUSES.value(user.status),
        email_verified=user.email_verified,
        mfa_enabled=user.mfa_enabled,
        create_time=to_timestamp(user.created_at),
    )


def session_proto(row: AuthSession, current_session_id: str | None) -> auth_pb2.Session:
    return auth_pb2.Session(
        id=row.id,
        create_time=to_timestamp(row.created_at),
        last_used_time=to_timestamp(row.last_used_at),
        user_agent=row.user_agent,
        ip=row.ip,
        current=row.id == current_session_id,
    )


def tokens_proto(tokens: IssuedTokens) -> auth_pb2.Tokens:
    return auth_pb2.Tokens(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="Bearer",
        expires_in=tokens.expires_in,
        refresh_expires_in=tokens.refresh_expires_in,
    )


def address_proto(row: Address) -> auth_pb2.Address:
    return auth_pb2.Address(
        id=row.id,
        label=row.label,
        first_name=row.first_name,
        last_name=row.last_name,
        line1=row.line1,
        line2=row.line2,
        city=row.city,
        state=row.state,
        postal_code=row.postal_code,
        country=row.country,
        phone=row.phone,
        is_default=row.is_default,
    )


def revocations_proto(rows: Sequence[tuple[str, datetime]], as_of: datetime) -> auth_pb2.ListRevocationsResponse:
    return auth_pb2.ListRevocationsResponse(
        sessions=[auth_pb2.RevokedSession(session_id=sid, revoke_time=to_timestamp(at)) for sid, at in rows],
        as_of=to_timestamp(as_of),
    )
