"""Use cases of accounts: Register, Login, GetCurrentUser, UpdateProfile, DeleteAccount,
ChangePassword, RequestPasswordReset, ResetPassword, VerifyEmail.

Each write opens its one transaction here. A password check first commits its attempt on its own
(credentials.py: concurrent guesses must all count), so Login, ChangePassword and DeleteAccount
write that record, then their one unit of work. Validation rules are in domain.py, the email
texts in emails.py, the queries in repository.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from services.auth import domain, emails, repository
from services.auth.config import AuthSettings
from services.auth.credentials import Credentials
from services.auth.mfa import claim_second_factor
from services.auth.models import User
from services.auth.sessions import Client, IssuedTokens, Sessions, lock_signed_in_user, signed_in_user
from shop.lib.addresses import clean_phone
from shop.lib.context import Caller
from shop.lib.db import Database, utcnow
from shop.lib.errors import AlreadyExists, InvalidArgument, PermissionDenied, Unauthenticated, ValidationError
from shop.lib.validation import FieldErrors

INVALID_CREDENTIALS = "Invalid email or password."

SendMail = Callable[[str, str, str], None]  # (to, subject, body), sent in the background


def email_taken() -> AlreadyExists:
    return AlreadyExists("An account with this email already exists.", code="EMAIL_TAKEN")


def invalid_token() -> InvalidArgument:
    return InvalidArgument("The token is not valid, used or expired.", code="INVALID_TOKEN")


class Accounts:
    def __init__(
        self, settings: AuthSettings, db: Database, *, credentials: Credentials, sessions: Sessions, send_mail: SendMail
    ) -> None:
        self.settings = settings
        self.db = db
        self.credentials = credentials
        self.sessions = sessions
        self.send_mail = send_mail

    def _mail(self, to: str, mail: emails.Mail) -> None:
        self.send_mail(to, mail.subject, mail.body)

    # -- registration and login ----------------------------------------------------------------------

    async def register(
        self, email: str, password: str, first_name: str, last_name: str, client: Client
    ) -> tuple[User, IssuedTokens]:
        problems = FieldErrors()
        try:
            email = domain.normalize_email(email)
        except ValueError as exc:
            problems.add("email", str(exc))
        domain.check_password(problems, "password", password)
        first_name = domain.clean_name(problems, "firstName", first_name)
        last_name = domain.clean_name(problems, "lastName", last_name)
        problems.raise_if_any()
        password_hash = await self.credentials.hash(password)
        now = utcnow()
        verification_token = domain.new_opaque_token()
        try:
            async with self.db.transaction() as session:
                if await repository.email_exists(session, email):
                    raise email_taken()
                user = await repository.add_user(
                    session,
                    email=email,
                    password_hash=password_hash,
                    first_name=first_name,
                    last_name=last_name,
                    phone="",
                    role="CUSTOMER",
                    status=domain.STATUS_ACTIVE,
                    email_verified=False,
                    mfa_enabled=False,
                    created_at=now,
                    updated_at=now,
                )
                await repository.add_one_time_token(
                    session,
                    user.id,
                    domain.PURPOSE_EMAIL_VERIFICATION,
                    domain.token_digest(verification_token),
                    now,
                    now + timedelta(hours=self.settings.email_verification_ttl_hours),
                )
                tokens = await self.sessions.start(session, user, client, now)
        except IntegrityError:  # a concurrent registration of the same email won
            raise email_taken() from None
        self._mail(email, emails.verification(self.settings, verification_token))
        return user, tokens

    async def login(self, email: str, password: str, otp: str, client: Client) -> tuple[User, IssuedTokens]:
        problems = FieldErrors()
        email = email.strip().lower()
        if not email:
            problems.add("email", "is required")
        elif len(email) > domain.EMAIL_MAX_CHARS or domain.has_control_chars(email):
            problems.add("email", "is not a valid email address")
        if not password:
            problems.add("password", "is required")
        problems.raise_if_any()
        attempt_id = await self.credentials.begin_attempt(email)
        async with self.db.session() as session:
            user = await repository.get_user_by_email(session, email)
        if user is None or not domain.may_sign_in(user.status):
            await self.credentials.spend_a_verify(password)  # same time as a real check
            raise Unauthenticated(INVALID_CREDENTIALS, code="INVALID_CREDENTIALS")
        if not await self.credentials.verify(password, user.password_hash):
            raise Unauthenticated(INVALID_CREDENTIALS, code="INVALID_CREDENTIALS")
        rehashed = await self.credentials.rehash_if_stale(password, user.password_hash)
        # The password is right: what follows may reveal the account's state.
        if user.status == domain.STATUS_SUSPENDED:
            await self.credentials.forget_attempt(attempt_id)
            raise PermissionDenied("This account is suspended.", code="ACCOUNT_SUSPENDED")
        if user.mfa_enabled and not otp.strip():
            await self.credentials.forget_attempt(attempt_id)
            raise Unauthenticated("A one-time code from your authenticator app is required.", code="MFA_REQUIRED")
        now = utcnow()
        async with self.db.transaction() as session:
            # The code is used up only together with the session it opens.
            if user.mfa_enabled and not await claim_second_factor(session, user, otp, now):
                raise Unauthenticated("The one-time code is not valid.", code="INVALID_OTP")
            await repository.clear_attempts(session, email)
            if rehashed is not None:
                await repository.set_password_hash(session, user.id, user.password_hash, rehashed)
            tokens = await self.sessions.start(session, user, client, now)
        return user, tokens

    # -- profile -------------------------------------------------------------------------------------

    async def current_user(self, caller: Caller) -> User:
        return await signed_in_user(self.db, caller)

    async def update_profile(self, caller: Caller, given: dict[str, str]) -> User:
        """`given` holds only the fields the request set (first_name, last_name, phone)."""
        user = await signed_in_user(self.db, caller)
        problems = FieldErrors()
        changes = {}
        if "first_name" in given:
            changes["first_name"] = domain.clean_name(problems, "firstName", given["first_name"])
        if "last_name" in given:
            changes["last_name"] = domain.clean_name(problems, "lastName", given["last_name"])
        if "phone" in given:
            # A profile phone has no country: it is written in international form (+49 30 ...).
            changes["phone"] = clean_phone(problems, "phone", given["phone"])
        problems.raise_if_any()
        async with self.db.transaction() as session:
            row = await lock_signed_in_user(session, user.id)
            for name, value in changes.items():
                setattr(row, name, value)
            if changes:
                row.updated_at = utcnow()
        return row

    async def delete_account(self, caller: Caller, password: str) -> list[str]:
        """Deactivates the account and ends its sessions; returns their ids."""
        user = await signed_in_user(self.db, caller)
        if not password:
            raise ValidationError.single("password", "is required")
        await self.credentials.check_own_password(user, password)
        now = utcnow()
        async with self.db.transaction() as session:
            await repository.clear_attempts(session, user.email)
            row = await lock_signed_in_user(session, user.id)
            row.status = domain.STATUS_DEACTIVATED
            row.updated_at = now
            ids = await repository.revoke_user_sessions(session, user.id, "account_deleted", now)
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
        return ids

    # -- passwords and email -------------------------------------------------------------------------

    async def change_password(self, caller: Caller, current_password: str, new_password: str) -> None:
        """Other sessions end; the caller's own stays."""
        user = await signed_in_user(self.db, caller)
        problems = FieldErrors()
        if not current_password:
            problems.add("currentPassword", "is required")
        domain.check_password(problems, "newPassword", new_password)
        problems.raise_if_any()
        await self.credentials.check_own_password(
            user, current_password, message="The current password is not correct."
        )
        password_hash = await self.credentials.hash(new_password)
        now = utcnow()
        async with self.db.transaction() as session:
            row = await lock_signed_in_user(session, user.id)
            row.password_hash = password_hash
            row.updated_at = now
            await repository.clear_attempts(session, user.email)
            await repository.revoke_user_sessions(session, user.id, "password_changed", now, keep=caller.session_id)
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
        self._mail(user.email, emails.password_changed(self.settings))

    async def request_password_reset(self, email: str) -> None:
        """Mails a reset link to an active account; the same (silent) outcome whatever was sent."""
        try:
            email = domain.normalize_email(email)
        except ValueError:
            return
        now = utcnow()
        token = domain.new_opaque_token()
        async with self.db.transaction() as session:
            user = await repository.get_user_by_email(session, email)
            if user is None or user.status != domain.STATUS_ACTIVE:
                return
            # A newer request voids every older token.
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
            await repository.add_one_time_token(
                session,
                user.id,
                domain.PURPOSE_PASSWORD_RESET,
                domain.token_digest(token),
                now,
                now + timedelta(minutes=self.settings.password_reset_ttl_minutes),
            )
        self._mail(email, emails.password_reset(self.settings, token))

    async def reset_password(self, token: str, new_password: str) -> None:
        """Sets the password, proves the mailbox, ends every session."""
        token = token.strip()
        if not token:
            raise InvalidArgument("The token is not valid.", code="INVALID_TOKEN")
        problems = FieldErrors()
        domain.check_password(problems, "newPassword", new_password)
        problems.raise_if_any()
        digest = domain.token_digest(token)
        now = utcnow()
        async with self.db.session() as session:
            usable = await repository.token_is_usable(session, digest, domain.PURPOSE_PASSWORD_RESET, now)
        if not usable:  # don't spend a bcrypt hash on a bad token
            raise invalid_token()
        password_hash = await self.credentials.hash(new_password)
        async with self.db.transaction() as session:
            user_id = await repository.consume_one_time_token(session, digest, domain.PURPOSE_PASSWORD_RESET, now)
            user = await repository.get_user(session, user_id, for_update=True) if user_id else None
            if user is None or user.status == domain.STATUS_DEACTIVATED:
                raise invalid_token()
            user.password_hash = password_hash
            user.email_verified = True  # the reset link proved the mailbox
            user.updated_at = now
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
            await repository.revoke_user_sessions(session, user.id, "password_reset", now)
            await repository.clear_attempts(session, user.email)
            email = user.email
        self._mail(email, emails.password_changed(self.settings))

    async def verify_email(self, token: str) -> None:
        token = token.strip()
        now = utcnow()
        async with self.db.transaction() as session:
            user_id = None
            if token:
                user_id = await repository.consume_one_time_token(
                    session, domain.token_digest(token), domain.PURPOSE_EMAIL_VERIFICATION, now
                )
            user = await repository.get_user(session, user_id, for_update=True) if user_id else None
            if user is None:
                raise invalid_token()
            user.email_verified = True
            user.updated_at = now
