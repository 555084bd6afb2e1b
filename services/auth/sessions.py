"""Use cases of sign-in sessions: starting one (for Register and Login), refresh-token rotation
(RefreshToken), Logout, ListSessions, RevokeSession, RevokeAllSessions, the revocation feed
(ListRevocations), and loading the signed-in user of a call.

Each write opens its one transaction here; the rotation rule is domain.unclaimed_refresh /
domain.may_rotate, the queries are in repository.py."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.auth import domain, repository
from services.auth.config import AuthSettings
from services.auth.domain import Refresh
from services.auth.keys import SigningKey
from services.auth.models import AuthSession, User
from shop.lib.context import Caller
from shop.lib.db import Database, utcnow
from shop.lib.errors import NotFound, Unauthenticated

# How far back ListRevocations' `as_of` reaches: revocations committed late are seen on the next poll.
REVOCATION_POLL_OVERLAP = timedelta(seconds=5)
# Without `since`, the feed covers an access token's lifetime and this much more.
REVOCATION_DEFAULT_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


@dataclass(frozen=True)
class Client:
    """Where a sign-in comes from, as the gateway saw it (shown in ListSessions)."""

    user_agent: str
    ip: str


def invalid_refresh_token() -> Unauthenticated:
    return Unauthenticated("The refresh token is not valid.", code="INVALID_REFRESH_TOKEN")


def session_not_found() -> NotFound:
    return NotFound("Session not found.", code="SESSION_NOT_FOUND")


async def signed_in_user(db: Database, caller: Caller) -> User:
    """The caller's user row (a read); 401 when it is gone."""
    async with db.session() as session:
        user = await repository.get_user(session, caller.user_id or "")
    if user is None:
        raise Unauthenticated("The session has ended.")
    return user


async def lock_signed_in_user(session: AsyncSession, user_id: str) -> User:
    """The caller's user row, locked for the transaction's write; 401 when it is gone."""
    user = await repository.get_user(session, user_id, for_update=True)
    if user is None:
        raise Unauthenticated("The session has ended.")
    return user


class Sessions:
    def __init__(self, settings: AuthSettings, db: Database, signing_key: SigningKey) -> None:
        self.settings = settings
        self.db = db
        self.signing_key = signing_key

    @property
    def lifetime(self) -> timedelta:
        return timedelta(days=self.settings.refresh_token_ttl_days)

    @property
    def max_lifetime(self) -> timedelta:
        return timedelta(days=self.settings.session_max_lifetime_days)

    def issue(
        self, user: User, session_id: str, refresh_token: str, expires_at: datetime, now: datetime
    ) -> IssuedTokens:
        access = self.signing_key.mint_access_token(
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            user_id=user.id,
            role=user.role,
            session_id=session_id,
            lifetime=timedelta(seconds=self.settings.access_token_ttl_seconds),
            email=user.email,
        )
        return IssuedTokens(access.token, refresh_token, access.expires_in, int((expires_at - now).total_seconds()))

    async def start(self, session: AsyncSession, user: User, client: Client, now: datetime) -> IssuedTokens:
        """A new session and its first refresh token, inside the caller's transaction."""
        expires_at = domain.session_expiry(now, self.lifetime, started_at=now, max_lifetime=self.max_lifetime)
        row = await repository.add_session(session, user.id, now, expires_at, client.user_agent[:512], client.ip[:64])
        refresh_token = domain.new_opaque_token()
        await repository.add_refresh_token(session, row.id, domain.token_digest(refresh_token), now, row.expires_at)
        return self.issue(user, row.id, refresh_token, expires_at, now)

    async def refresh(self, token: str, client: Client) -> IssuedTokens:
        """Rotation: the token is claimed once (a conditional UPDATE), a new one is issued and the
        session slides. A reused token ends its session, committed before the refusal is raised."""
        token = token.strip()
        if not token:
            raise Unauthenticated("A refresh token is required.", code="INVALID_REFRESH_TOKEN")
        digest = domain.token_digest(token)
        requested = utcnow()  # before any lock is waited for (SQLite serializes at BEGIN)
        tokens = None
        async with self.db.transaction() as session:
            started = await repository.db_clock(session, requested)
            now = utcnow()
            claimed = await repository.claim_refresh_token(session, digest, started)
            if claimed is None:
                known = await repository.find_refresh_token(session, digest)
                outcome = domain.unclaimed_refresh(
                    known=known is not None, used_at=known.used_at if known else None, started=started
                )
                if outcome is Refresh.REUSED and known is not None:
                    await repository.revoke_session(session, known.session_id, "refresh_token_reused", now)
            else:
                tokens = await self._rotate(session, claimed.session_id, claimed.expires_at, client, now)
                outcome = Refresh.INVALID if tokens is None else Refresh.ROTATED
                if tokens is not None:
                    await repository.finish_rotation(session, claimed.id, await repository.db_clock(session, utcnow()))
        if outcome is Refresh.REUSED:
            raise Unauthenticated(
                "This refresh token was already used; the session has been ended.", code="REFRESH_TOKEN_REUSED"
            )
        if outcome is Refresh.RACED:
            raise Unauthenticated("This refresh token was used by a concurrent request.", code="REFRESH_TOKEN_REUSED")
        if tokens is None:
            raise invalid_refresh_token()
        return tokens

    async def _rotate(
        self, session: AsyncSession, session_id: str, token_expires_at: datetime, client: Client, now: datetime
    ) -> IssuedTokens | None:
        row = await repository.get_session(session, session_id)
        user = await repository.get_user(session, row.user_id) if row is not None else None
        if (
            row is None
            or user is None
            or not domain.may_rotate(
                session_revoked_at=row.revoked_at,
                session_expires_at=row.expires_at,
                token_expires_at=token_expires_at,
                session_ends_at=row.created_at + self.max_lifetime,
                user_status=user.status,
                now=now,
            )
        ):
            return None
        expires_at = domain.session_expiry(
            now, self.lifetime, started_at=row.created_at, max_lifetime=self.max_lifetime
        )
        new_token = domain.new_opaque_token()
        await repository.add_refresh_token(session, row.id, domain.token_digest(new_token), now, expires_at)
        await repository.touch_session(session, row.id, now, expires_at, client.user_agent[:512], client.ip[:64])
        return self.issue(user, row.id, new_token, expires_at, now)

    async def logout(self, caller: Caller, refresh_token: str) -> str:
        """Ends the caller's session, or the one `refresh_token` belongs to; returns its id."""
        refresh_token = refresh_token.strip()
        now = utcnow()
        async with self.db.transaction() as session:
            if caller.is_user:
                session_id = caller.session_id or ""
                await repository.revoke_session(session, session_id, "logout", now, user_id=caller.user_id)
            elif refresh_token:
                known = await repository.find_refresh_token(session, domain.token_digest(refresh_token))
                if known is None:
                    raise invalid_refresh_token()
                session_id = known.session_id
                await repository.revoke_session(session, session_id, "logout", now)
            else:
                raise Unauthenticated("Authentication required.")
        return session_id

    async def list(self, caller: Caller) -> Sequence[AuthSession]:
        async with self.db.session() as session:
            return await repository.active_sessions(session, caller.user_id or "", utcnow())

    async def revoke(self, caller: Caller, session_id: str) -> None:
        if not domain.is_uuid(session_id):
            raise session_not_found()
        async with self.db.transaction() as session:
            revoked = await repository.revoke_session(
                session, session_id, "revoked_by_user", utcnow(), user_id=caller.user_id
            )
        if not revoked:
            raise session_not_found()

    async def revoke_all(self, caller: Caller) -> builtins.list[str]:  # `list` is the method above
        async with self.db.transaction() as session:
            return await repository.revoke_user_sessions(session, caller.user_id or "", "revoked_by_user", utcnow())

    async def revocations(self, since: datetime | None) -> tuple[Sequence[tuple[str, datetime]], datetime]:
        """Sessions revoked at or after `since`, and the `as_of` the next poll should ask from."""
        now = utcnow()
        async with self.db.session() as session:
            reach = timedelta(seconds=self.settings.access_token_ttl_seconds) + REVOCATION_DEFAULT_MARGIN
            rows = await repository.revoked_since(session, since or now - reach)
        return rows, now - REVOCATION_POLL_OVERLAP
