"""Use cases of TOTP two-factor authentication: SetupMfa, EnableMfa, DisableMfa, and the second
factor of a login (a TOTP code or a recovery code, claimed inside Login's transaction).

Each write opens its one transaction here; TOTP and recovery-code rules are in domain.py. A TOTP
time-step is claimed with a conditional UPDATE (repository.claim_totp_step), so no code is
accepted twice, even concurrently. Enable and disable are throttled like logins (the same lockout
rule, counted per account under its own key), and each change is mailed to the account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.auth import domain, emails, repository
from services.auth.config import AuthSettings
from services.auth.credentials import Credentials
from services.auth.models import User
from services.auth.sessions import lock_signed_in_user, signed_in_user
from shop.lib.context import Caller
from shop.lib.db import Database, utcnow
from shop.lib.errors import Conflict, InvalidArgument, ValidationError


def already_enabled() -> Conflict:
    return Conflict("Two-factor authentication is already enabled.", code="MFA_ALREADY_ENABLED")


def invalid_otp() -> InvalidArgument:
    return InvalidArgument("The one-time code is not valid.", code="INVALID_OTP")


async def claim_second_factor(session: AsyncSession, user: User, code: str, now: datetime) -> bool:
    """A TOTP code of a time-step not used before, or an unused recovery code (used up), inside
    the caller's transaction."""
    code = code.strip()
    if domain.looks_like_totp(code):
        step = domain.match_totp(user.mfa_secret or "", code, now, user.mfa_last_step)
        return step is not None and await repository.claim_totp_step(session, user.id, step)
    return await repository.consume_recovery_code(session, user.id, domain.recovery_code_digest(code), now)


def attempts_key(user: User) -> str:
    """The lockout counter of a user's MFA changes (separate from their logins' counter)."""
    return f"mfa:{user.id}"


class Mfa:
    def __init__(
        self,
        settings: AuthSettings,
        db: Database,
        *,
        credentials: Credentials,
        send_mail: Callable[[str, str, str], None],
    ) -> None:
        self.settings = settings
        self.db = db
        self.credentials = credentials
        self.send_mail = send_mail

    def _notify(self, user: User, *, enabled: bool) -> None:
        mail = emails.mfa_changed(self.settings, enabled=enabled)
        self.send_mail(user.email, mail.subject, mail.body)

    async def setup(self, caller: Caller) -> tuple[str, str]:
        """A new pending secret; returns it and its otpauth:// URI (for a QR code)."""
        user = await signed_in_user(self.db, caller)
        if user.mfa_enabled:
            raise already_enabled()
        secret = domain.new_totp_secret()
        async with self.db.transaction() as session:
            row = await lock_signed_in_user(session, user.id)
            row.mfa_pending_secret = secret
            row.updated_at = utcnow()
        return secret, domain.otpauth_uri(secret, user.email, self.settings.mfa_issuer)

    async def enable(self, caller: Caller, otp: str) -> list[str]:
        """Turns the pending secret on once a code of it is shown; returns fresh recovery codes."""
        user = await signed_in_user(self.db, caller)
        if not otp.strip():
            raise ValidationError.single("otp", "is required")
        if user.mfa_enabled:
            raise already_enabled()
        if not user.mfa_pending_secret:
            raise Conflict("Call MFA setup first.", code="MFA_NOT_SET_UP")
        await self.credentials.begin_attempt(attempts_key(user))
        now = utcnow()
        codes = domain.new_recovery_codes()
        async with self.db.transaction() as session:
            row = await lock_signed_in_user(session, user.id)
            secret = row.mfa_pending_secret or ""
            step = domain.match_totp(secret, otp, now, row.mfa_last_step) if not row.mfa_enabled else None
            if step is None or not await repository.claim_totp_step(session, user.id, step):
                raise invalid_otp()
            await session.refresh(row)
            row.mfa_secret = secret
            row.mfa_pending_secret = None
            row.mfa_enabled = True
            row.updated_at = now
            await repository.replace_recovery_codes(session, user.id, [domain.recovery_code_digest(c) for c in codes])
            await repository.clear_attempts(session, attempts_key(user))
        self._notify(user, enabled=True)
        return codes

    async def disable(self, caller: Caller, otp: str, recovery_code: str) -> None:
        user = await signed_in_user(self.db, caller)
        otp, recovery_code = otp.strip(), recovery_code.strip()
        if not otp and not recovery_code:
            raise ValidationError.single("otp", "an otp or a recoveryCode is required")
        if not user.mfa_enabled:
            raise Conflict("Two-factor authentication is not enabled.", code="MFA_NOT_ENABLED")
        await self.credentials.begin_attempt(attempts_key(user))
        now = utcnow()
        async with self.db.transaction() as session:
            if otp:
                step = domain.match_totp(user.mfa_secret or "", otp, now, user.mfa_last_step)
                if step is None or not await repository.claim_totp_step(session, user.id, step):
                    raise invalid_otp()
            elif not await repository.consume_recovery_code(
                session, user.id, domain.recovery_code_digest(recovery_code), now
            ):
                raise InvalidArgument("The recovery code is not valid.", code="INVALID_RECOVERY_CODE")
            row = await lock_signed_in_user(session, user.id)
            await session.refresh(row)
            row.mfa_enabled = False
            row.mfa_secret = None
            row.mfa_pending_secret = None
            row.updated_at = now
            await repository.delete_recovery_codes(session, user.id)
            await repository.clear_attempts(session, attempts_key(user))
        self._notify(user, enabled=False)
