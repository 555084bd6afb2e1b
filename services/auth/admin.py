"""Use cases of user administration: ListUsers, GetUser, UpdateUser (role, suspension,
deactivation), and the admin bootstrap at start.

UpdateUser opens its one transaction here; what a change means (which ones end every session) is
domain.UserChange, the queries are in repository.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import IntegrityError

from services.auth import domain, repository
from services.auth.config import AuthSettings
from services.auth.models import User
from shop.lib.context import Caller
from shop.lib.db import Database, utcnow
from shop.lib.errors import Conflict, NotFound, ValidationError
from shop.lib.pagination import PageTokens, aware_datetime, fingerprint, page_size

log = structlog.get_logger("auth")


def user_not_found() -> NotFound:
    return NotFound("User not found.", code="USER_NOT_FOUND")


class Admin:
    def __init__(self, settings: AuthSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.page_tokens = PageTokens(settings.page_token_secret)

    async def list_users(
        self, *, role: str | None, status: str | None, query: str, size: int, page_token: str
    ) -> tuple[Sequence[User], str, int]:
        """One page, newest first (keyset on created_at, id), the next page's token and the total."""
        size = page_size(size)
        query = query.strip()
        if len(query) > 100:
            raise ValidationError.single("q", "must be at most 100 characters")
        if domain.has_control_chars(query):
            raise ValidationError.single("q", "must not contain control characters")
        query_fp = fingerprint(role=role, status=status, q=query.lower())
        after = self.page_tokens.decode_after(
            page_token, query_fp, parse_key=aware_datetime, key_field="c", id_field="i"
        )
        async with self.db.session() as session:
            rows, total = await repository.list_users(
                session, role=role, status=status, query=query, after=after, limit=size + 1
            )
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_token = self.page_tokens.encode_after(last.created_at, last.id, query_fp, key_field="c", id_field="i")
        return rows, next_token, total

    async def get_user(self, user_id: str) -> User:
        if not domain.is_uuid(user_id):
            raise user_not_found()
        async with self.db.session() as session:
            user = await repository.get_user(session, user_id)
        if user is None:
            raise user_not_found()
        return user

    async def update_user(self, caller: Caller, user_id: str, *, role: str | None, status: str | None) -> User:
        """A role or status change; any that could keep old rights ends every session of the user."""
        if role is None and status is None:
            raise ValidationError({"role": ["give a role or a status"], "status": ["give a role or a status"]})
        if not domain.is_uuid(user_id):
            raise user_not_found()
        now = utcnow()
        async with self.db.transaction() as session:
            user = await repository.get_user(session, user_id, for_update=True)
            if user is None:
                raise user_not_found()
            change = domain.UserChange.between(
                role=user.role, status=user.status, wanted_role=role, wanted_status=status
            )
            if user.id == caller.user_id and change.changes_anything:
                raise Conflict("Administrators cannot change their own role or status.", code="CANNOT_CHANGE_SELF")
            if change.role:
                user.role = change.role
            if change.status:
                user.status = change.status
            if change.changes_anything:
                user.updated_at = now
            if change.ends_sessions:
                await repository.revoke_user_sessions(session, user.id, "changed_by_admin", now)
        return user


async def bootstrap_admin(settings: AuthSettings, db: Database) -> None:
    """Creates the configured admin when a password is set and no user has that email.
    An existing user (whatever its password) is never changed."""
    if not settings.admin_password:
        return
    email = domain.normalize_email(settings.admin_email)
    async with db.session() as session:
        if await repository.email_exists(session, email):
            return
    problems = domain.password_problems(settings.admin_password)
    if problems:
        raise RuntimeError(f"SHOP_ADMIN_PASSWORD does not meet the password policy: {'; '.join(problems)}")
    password_hash = await asyncio.to_thread(domain.hash_password, settings.admin_password, settings.bcrypt_rounds)
    now = utcnow()
    try:
        async with db.transaction() as session:
            await repository.add_user(
                session,
                email=email,
                password_hash=password_hash,
                first_name="Admin",
                last_name="User",
                role="ADMIN",
                status=domain.STATUS_ACTIVE,
                email_verified=True,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:  # another replica created it first
        return
    log.info("admin.created", email=email)
