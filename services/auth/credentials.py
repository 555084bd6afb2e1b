"""Password checks: bcrypt off the event loop, and the login lockout every password check goes
through (Login, ChangePassword, DeleteAccount).

The attempt is recorded, in its own committed transaction, *before* the password is checked, so
concurrent guesses all count; the rule (how many, how long) is domain.lockout_retry_after."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.auth import domain, repository
from services.auth.config import AuthSettings
from services.auth.models import User
from shop.lib.db import Database, utcnow
from shop.lib.errors import InvalidArgument, ResourceExhausted


class Credentials:
    def __init__(self, settings: AuthSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        # A real bcrypt hash of the configured cost: unknown emails are "verified" against it so
        # that a login takes as long whether or not the account exists.
        self.dummy_password_hash = domain.hash_password(domain.new_opaque_token()[:32], settings.bcrypt_rounds)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.settings.login_window_seconds)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(domain.hash_password, password, self.settings.bcrypt_rounds)

    async def verify(self, password: str, password_hash: str) -> bool:
        return await asyncio.to_thread(domain.verify_password, password, password_hash)

    async def rehash_if_stale(self, password: str, password_hash: str) -> str | None:
        """A new hash at the configured cost when `password_hash` was made with another one."""
        if not domain.needs_rehash(password_hash, self.settings.bcrypt_rounds):
            return None
        return await self.hash(password)

    async def spend_a_verify(self, password: str) -> None:
        """Takes as long as a real check (for an account that does not exist)."""
        await self.verify(password, self.dummy_password_hash)

    async def begin_attempt(self, email: str) -> str:
        """Records a password attempt for `email` before checking it (so concurrent guesses count),
        or refuses with 429 while the lockout window is full. Its own unit of work: it must be
        committed whatever the check that follows decides."""
        now = utcnow()
        async with self.db.transaction() as session:
            await repository.lock_email(session, email)
            failures = await repository.recent_attempts(session, email, now - self.window)
            retry_after = domain.lockout_retry_after(
                failures, now, max_failures=self.settings.login_max_failures, window=self.window
            )
            if retry_after is None:
                return await repository.add_attempt(session, email, now, now - self.window)
        raise ResourceExhausted(
            "Too many failed attempts. Try again later.", code="TOO_MANY_ATTEMPTS", retry_after=retry_after
        )

    async def forget_attempt(self, attempt_id: str) -> None:
        """The attempt did not fail on credentials (e.g. MFA code still to come): it does not count."""
        async with self.db.transaction() as session:
            await repository.delete_attempt(session, attempt_id)

    async def check_own_password(
        self, user: User, password: str, *, message: str = "The password is not correct."
    ) -> None:
        """A signed-in user confirming their password: counted like logins; 400 INVALID_PASSWORD.
        On success the caller's transaction clears the attempts (repository.clear_attempts)."""
        await self.begin_attempt(user.email)
        if not await self.verify(password, user.password_hash):
            raise InvalidArgument(message, code="INVALID_PASSWORD")
