"""Queries of the auth service (SQLAlchemy Core/ORM with bound parameters; no SQL from strings).

Module-level functions, each taking the caller's session: the use case (accounts.py, sessions.py,
mfa.py, addresses.py, admin.py) owns the transaction (`db.transaction()`) and commits; nothing
here begins, commits, checks permissions or raises a shop error.
Single-use things (refresh tokens, reset/verification tokens, recovery codes, TOTP steps) are
claimed with one conditional UPDATE, so of concurrent claims exactly one wins on PostgreSQL and
SQLite alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import (
    Address,
    AuthSession,
    LoginAttempt,
    OneTimeToken,
    RecoveryCode,
    RefreshToken,
    User,
)
from shop.lib.db import affected_rows

# -- users ----------------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: str, *, for_update: bool = False) -> User | None:
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def add_user(session: AsyncSession, **values) -> User:
    user = User(**values)
    session.add(user)
    await session.flush()
    return user


async def email_exists(session: AsyncSession, email: str) -> bool:
    return (await session.execute(select(User.id).where(User.email == email))).first() is not None


async def claim_totp_step(session: AsyncSession, user_id: str, step: int) -> bool:
    """Records `step` as the user's last used TOTP step unless it (or a later one) was used."""
    result = await session.execute(
        update(User)
        .where(User.id == user_id, or_(User.mfa_last_step.is_(None), User.mfa_last_step < step))
        .values(mfa_last_step=step)
    )
    return affected_rows(result) == 1


async def list_users(
    session: AsyncSession,
    *,
    role: str | None,
    status: str | None,
    query: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[Sequence[User], int]:
    """Newest first, keyset on (created_at, id); returns one page and the total matching."""
    conditions = []
    if role:
        conditions.append(User.role == role)
    if status:
        conditions.append(User.status == status)
    if query:
        needle = query.lower()
        conditions.append(
            or_(
                func.lower(User.email).contains(needle, autoescape=True),
                func.lower(User.first_name).contains(needle, autoescape=True),
                func.lower(User.last_name).contains(needle, autoescape=True),
            )
        )
    total = (await session.execute(select(func.count()).select_from(User).where(*conditions))).scalar_one()
    page_conditions = list(conditions)
    if after is not None:
        created, user_id = after
        page_conditions.append(or_(User.created_at < created, and_(User.created_at == created, User.id < user_id)))
    rows = (
        (
            await session.execute(
                select(User).where(*page_conditions).order_by(User.created_at.desc(), User.id.desc()).limit(limit)
            )
        )
        .scalars()
        .all()
    )
    return rows, int(total)


# -- sessions and refresh tokens ------------------------------------------------------------------


async def get_session(session: AsyncSession, session_id: str) -> AuthSession | None:
    return (await session.execute(select(AuthSession).where(AuthSession.id == session_id))).scalar_one_or_none()


async def add_session(
    session: AsyncSession, user_id: str, now: datetime, expires_at: datetime, user_agent: str, ip: str
) -> AuthSession:
    row = AuthSession(
        user_id=user_id, created_at=now, last_used_at=now, expires_at=expires_at, user_agent=user_agent, ip=ip
    )
    session.add(row)
    await session.flush()
    return row


async def session_is_active(session: AsyncSession, session_id: str, user_id: str, now: datetime) -> bool:
    """The session exists for that user, is neither revoked nor expired, and the user is ACTIVE."""
    row = (
        await session.execute(
            select(AuthSession.id)
            .join(User, User.id == AuthSession.user_id)
            .where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
                User.status == "ACTIVE",
            )
        )
    ).first()
    return row is not None


async def active_sessions(session: AsyncSession, user_id: str, now: datetime) -> Sequence[AuthSession]:
    return (
        (
            await session.execute(
                select(AuthSession)
                .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now)
                .order_by(AuthSession.created_at.desc(), AuthSession.id.desc())
            )
        )
        .scalars()
        .all()
    )


async def add_refresh_token(
    session: AsyncSession, session_id: str, token_hash: str, now: datetime, expires_at: datetime
) -> None:
    session.add(RefreshToken(session_id=session_id, token_hash=token_hash, created_at=now, expires_at=expires_at))
    await session.flush()


async def claim_refresh_token(session: AsyncSession, token_hash: str, now: datetime) -> RefreshToken | None:
    """Marks an unused refresh token used and returns it; None when unknown or already used.
    One conditional UPDATE: of concurrent claims of one token exactly one gets the row."""
    row = (
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_hash, RefreshToken.used.is_(False))
            .values(used=True, used_at=now)
            .returning(RefreshToken.id, RefreshToken.session_id, RefreshToken.expires_at)
        )
    ).first()
    if row is None:
        return None
    return RefreshToken(id=row.id, session_id=row.session_id, expires_at=row.expires_at, used=True, used_at=now)


async def db_clock(session: AsyncSession, fallback: datetime) -> datetime:
    """The database server's clock on PostgreSQL (one clock for every replica), else `fallback`."""
    if session.get_bind().dialect.name == "postgresql":
        return (await session.execute(select(func.clock_timestamp()))).scalar_one()
    return fallback


async def finish_rotation(session: AsyncSession, token_id: str, finished: datetime) -> None:
    """Stamps a rotated token with when its rotation finished (just before commit): a refresh with
    the same token that started before then was concurrent, not a replay."""
    await session.execute(update(RefreshToken).where(RefreshToken.id == token_id).values(used_at=finished))


async def find_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    ).scalar_one_or_none()


async def touch_session(
    session: AsyncSession, session_id: str, now: datetime, expires_at: datetime, user_agent: str, ip: str
) -> None:
    values: dict = {"last_used_at": now, "expires_at": expires_at}
    if user_agent:
        values["user_agent"] = user_agent
    if ip:
        values["ip"] = ip
    await session.execute(update(AuthSession).where(AuthSession.id == session_id).values(**values))


async def revoke_session(
    session: AsyncSession, session_id: str, reason: str, now: datetime, *, user_id: str | None = None
) -> bool:
    conditions = [AuthSession.id == session_id, AuthSession.revoked_at.is_(None)]
    if user_id is not None:
        conditions.append(AuthSession.user_id == user_id)
    result = await session.execute(update(AuthSession).where(*conditions).values(revoked_at=now, revoke_reason=reason))
    return affected_rows(result) == 1


async def revoke_user_sessions(
    session: AsyncSession, user_id: str, reason: str, now: datetime, *, keep: str | None = None
) -> list[str]:
    """Revokes every live session of the user (but `keep`); returns their ids."""
    conditions = [AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now]
    if keep is not None:
        conditions.append(AuthSession.id != keep)
    rows = await session.execute(
        update(AuthSession).where(*conditions).values(revoked_at=now, revoke_reason=reason).returning(AuthSession.id)
    )
    return [row.id for row in rows]


async def revoked_since(session: AsyncSession, since: datetime) -> Sequence[tuple[str, datetime]]:
    rows = await session.execute(
        select(AuthSession.id, AuthSession.revoked_at)
        .where(AuthSession.revoked_at >= since)
        .order_by(AuthSession.revoked_at)
    )
    return [(row.id, row.revoked_at) for row in rows]


# -- login attempts -------------------------------------------------------------------------------


async def lock_email(session: AsyncSession, email: str) -> None:
    """Serializes lockout bookkeeping per email for the transaction (PostgreSQL advisory lock;
    SQLite transactions are serialized already by BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"login:{email}"})


async def recent_attempts(session: AsyncSession, email: str, since: datetime) -> list[datetime]:
    rows = await session.execute(
        select(LoginAttempt.attempted_at).where(LoginAttempt.email == email, LoginAttempt.attempted_at > since)
    )
    return [row.attempted_at for row in rows]


async def add_attempt(session: AsyncSession, email: str, now: datetime, prune_before: datetime) -> str:
    await session.execute(
        delete(LoginAttempt).where(LoginAttempt.email == email, LoginAttempt.attempted_at <= prune_before)
    )
    attempt = LoginAttempt(email=email, attempted_at=now)
    session.add(attempt)
    await session.flush()
    return attempt.id


async def delete_attempt(session: AsyncSession, attempt_id: str) -> None:
    await session.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt_id))


async def clear_attempts(session: AsyncSession, email: str) -> None:
    await session.execute(delete(LoginAttempt).where(LoginAttempt.email == email))


async def set_password_hash(session: AsyncSession, user_id: str, old_hash: str, new_hash: str) -> None:
    """Only over the hash that was checked: a concurrent password change wins."""
    await session.execute(
        update(User).where(User.id == user_id, User.password_hash == old_hash).values(password_hash=new_hash)
    )


# -- one-time tokens (password reset, email verification) -----------------------------------------


async def void_tokens(session: AsyncSession, user_id: str, purpose: str, now: datetime) -> None:
    await session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.user_id == user_id, OneTimeToken.purpose == purpose, OneTimeToken.consumed_at.is_(None))
        .values(consumed_at=now)
    )


async def add_one_time_token(
    session: AsyncSession, user_id: str, purpose: str, token_hash: str, now: datetime, expires_at: datetime
) -> None:
    session.add(
        OneTimeToken(user_id=user_id, purpose=purpose, token_hash=token_hash, created_at=now, expires_at=expires_at)
    )
    await session.flush()


async def consume_one_time_token(session: AsyncSession, token_hash: str, purpose: str, now: datetime) -> str | None:
    """The token's user id if it was valid (right purpose, unused, unexpired); it is used up."""
    row = (
        await session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.token_hash == token_hash,
                OneTimeToken.purpose == purpose,
                OneTimeToken.consumed_at.is_(None),
                OneTimeToken.expires_at > now,
            )
            .values(consumed_at=now)
            .returning(OneTimeToken.user_id)
        )
    ).first()
    return row.user_id if row is not None else None


async def token_is_usable(session: AsyncSession, token_hash: str, purpose: str, now: datetime) -> bool:
    row = (
        await session.execute(
            select(OneTimeToken.id).where(
                OneTimeToken.token_hash == token_hash,
                OneTimeToken.purpose == purpose,
                OneTimeToken.consumed_at.is_(None),
                OneTimeToken.expires_at > now,
            )
        )
    ).first()
    return row is not None


# -- MFA recovery codes ---------------------------------------------------------------------------


async def replace_recovery_codes(session: AsyncSession, user_id: str, digests: list[str]) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(RecoveryCode(user_id=user_id, code_hash=digest) for digest in digests)
    await session.flush()


async def consume_recovery_code(session: AsyncSession, user_id: str, digest: str, now: datetime) -> bool:
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == digest, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    return affected_rows(result) == 1


async def delete_recovery_codes(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


# -- addresses ------------------------------------------------------------------------------------


async def list_addresses(session: AsyncSession, user_id: str) -> Sequence[Address]:
    return (
        (
            await session.execute(
                select(Address).where(Address.user_id == user_id).order_by(Address.created_at, Address.id)
            )
        )
        .scalars()
        .all()
    )


async def get_address(session: AsyncSession, user_id: str, address_id: str) -> Address | None:
    return (
        await session.execute(select(Address).where(Address.id == address_id, Address.user_id == user_id))
    ).scalar_one_or_none()


async def count_addresses(session: AsyncSession, user_id: str) -> int:
    return int(
        (
            await session.execute(select(func.count()).select_from(Address).where(Address.user_id == user_id))
        ).scalar_one()
    )


async def add_address(session: AsyncSession, user_id: str, is_default: bool, now: datetime, **values) -> Address:
    row = Address(user_id=user_id, is_default=is_default, created_at=now, **values)
    session.add(row)
    await session.flush()
    return row


async def delete_address(session: AsyncSession, row: Address) -> None:
    await session.delete(row)
    await session.flush()


async def clear_default_address(session: AsyncSession, user_id: str) -> None:
    await session.execute(
        update(Address).where(Address.user_id == user_id, Address.is_default.is_(True)).values(is_default=False)
    )
    await session.flush()


async def oldest_address(session: AsyncSession, user_id: str) -> Address | None:
    return (
        await session.execute(
            select(Address).where(Address.user_id == user_id).order_by(Address.created_at, Address.id).limit(1)
        )
    ).scalar_one_or_none()


# -- housekeeping ---------------------------------------------------------------------------------


async def delete_stale_rows(session: AsyncSession, attempts_before: datetime, tokens_before: datetime) -> int:
    """Login attempts that left the lockout window, and one-time tokens long expired."""
    attempts = await session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < attempts_before))
    tokens = await session.execute(delete(OneTimeToken).where(OneTimeToken.expires_at < tokens_before))
    return affected_rows(attempts) + affected_rows(tokens)
