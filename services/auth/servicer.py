"""RPC handlers of the auth service: parse the request, check the caller, call domain and
repository, map the result to protos. The rules live in domain.py, the queries in repository.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth import domain, repository
from services.auth.domain import Problems
from services.auth.models import Address, AuthSession, User
from shop.auth.v1 import auth_pb2, auth_pb2_grpc
from shop.lib.context import current_caller, require_admin, require_service, require_user
from shop.lib.db import to_timestamp, utcnow
from shop.lib.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    ValidationError,
)
from shop.lib.pagination import PageTokens, fingerprint, page_size

if TYPE_CHECKING:
    from services.auth.server import Runtime

INVALID_CREDENTIALS = "Invalid email or password."
# How far back ListRevocations' `as_of` reaches: revocations committed late are seen on the next poll.
REVOCATION_POLL_OVERLAP = timedelta(seconds=5)


# -- mapping ---------------------------------------------------------------------------------------


def user_proto(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        phone=user.phone,
        role=auth_pb2.Role.Value(f"ROLE_{user.role}"),
        status=auth_pb2.UserStatus.Value(f"USER_STATUS_{user.status}"),
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


ADDRESS_ATTRIBUTES = ("label", "first_name", "last_name", "line1", "line2", "city", "state", "postal_code",
                      "country", "phone")


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self.page_tokens = PageTokens(runtime.settings.page_token_secret)

    # -- helpers -------------------------------------------------------------------------------------

    @property
    def _window(self) -> timedelta:
        return timedelta(seconds=self.settings.login_window_seconds)

    @property
    def _refresh_lifetime(self) -> timedelta:
        return timedelta(days=self.settings.refresh_token_ttl_days)

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(domain.hash_password, password, self.settings.bcrypt_rounds)

    async def _verify(self, password: str, password_hash: str) -> bool:
        return await asyncio.to_thread(domain.verify_password, password, password_hash)

    def _tokens(self, user: User, session_id: str, refresh_token: str) -> auth_pb2.Tokens:
        access = self.runtime.signing_key.mint_access_token(
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            user_id=user.id,
            role=user.role,
            session_id=session_id,
            lifetime=timedelta(seconds=self.settings.access_token_ttl_seconds),
            email=user.email,
        )
        return auth_pb2.Tokens(
            access_token=access.token,
            refresh_token=refresh_token,
            token_type="Bearer",
            expires_in=access.expires_in,
            refresh_expires_in=int(self._refresh_lifetime.total_seconds()),
        )

    async def _start_session(self, session: AsyncSession, user: User, client: auth_pb2.ClientInfo,
                             now: datetime) -> auth_pb2.Tokens:
        row = AuthSession(
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + self._refresh_lifetime,
            user_agent=client.user_agent[:512],
            ip=client.ip[:64],
        )
        session.add(row)
        await session.flush()
        refresh_token = domain.new_opaque_token()
        await repository.add_refresh_token(session, row.id, domain.token_digest(refresh_token), now, row.expires_at)
        return self._tokens(user, row.id, refresh_token)

    async def _begin_attempt(self, email: str) -> str:
        """Records a password attempt for `email` before checking it (so concurrent guesses count),
        or refuses with 429 while the lockout window is full."""
        now = utcnow()
        async with self.db.transaction() as session:
            await repository.lock_email(session, email)
            failures = await repository.recent_attempts(session, email, now - self._window)
            retry_after = domain.lockout_retry_after(
                failures, now, max_failures=self.settings.login_max_failures, window=self._window
            )
            if retry_after is None:
                return await repository.add_attempt(session, email, now, now - self._window)
        raise ResourceExhausted(
            "Too many failed attempts. Try again later.", code="TOO_MANY_ATTEMPTS", retry_after=retry_after
        )

    async def _forget_attempt(self, attempt_id: str) -> None:
        """The attempt did not fail on credentials (e.g. MFA code still to come): it does not count."""
        async with self.db.transaction() as session:
            await repository.delete_attempt(session, attempt_id)

    async def _check_own_password(self, user: User, password: str) -> None:
        """For a signed-in user confirming their password: counted like logins; 400 INVALID_PASSWORD."""
        if not password:
            raise ValidationError.single("password", "is required")
        await self._begin_attempt(user.email)
        if not await self._verify(password, user.password_hash):
            raise InvalidArgument("The password is not correct.", code="INVALID_PASSWORD")
        async with self.db.transaction() as session:
            await repository.clear_attempts(session, user.email)

    async def _current_user(self) -> tuple[User, str | None]:
        caller = require_user()
        async with self.db.session() as session:
            user = await repository.get_user(session, caller.user_id or "")
        if user is None:
            raise Unauthenticated("The session has ended.")
        return user, caller.session_id

    async def _second_factor_ok(self, user: User, code: str) -> bool:
        """A TOTP code of a time-step not used before, or an unused recovery code (used up)."""
        code = code.strip()
        now = utcnow()
        async with self.db.transaction() as session:
            if domain.looks_like_totp(code):
                step = domain.match_totp(user.mfa_secret or "", code, now, user.mfa_last_step)
                return step is not None and await repository.claim_totp_step(session, user.id, step)
            return await repository.consume_recovery_code(session, user.id, domain.recovery_code_digest(code), now)

    def _send_verification(self, email: str, token: str) -> None:
        link = f"{self.settings.frontend_url.rstrip('/')}/verify-email?token={token}"
        self.runtime.send_mail_later(
            email,
            "Verify your email",
            f"Welcome to the shop!\n\nConfirm your email address by opening this link:\n\n{link}\n\n"
            f"The link is valid for {self.settings.email_verification_ttl_hours} hours. "
            "If you did not create an account, ignore this message.\n",
        )

    def _send_reset(self, email: str, token: str) -> None:
        link = f"{self.settings.frontend_url.rstrip('/')}/reset-password?token={token}"
        self.runtime.send_mail_later(
            email,
            "Reset your password",
            "Someone (hopefully you) asked to reset the password of your shop account.\n\n"
            f"Choose a new password here:\n\n{link}\n\n"
            f"The link is valid for {self.settings.password_reset_ttl_minutes} minutes and works once. "
            "If you did not ask for it, ignore this message: your password stays as it is.\n",
        )

    # -- registration, login, tokens -----------------------------------------------------------------

    async def Register(self, request, context):
        problems = Problems()
        email = ""
        try:
            email = domain.normalize_email(request.email)
        except ValueError as exc:
            problems.add("email", str(exc))
        domain.check_password(problems, "password", request.password)
        first_name = domain.clean_name(problems, "firstName", request.first_name)
        last_name = domain.clean_name(problems, "lastName", request.last_name)
        if problems:
            raise ValidationError(problems.fields)
        password_hash = await self._hash(request.password)
        now = utcnow()
        verification_token = domain.new_opaque_token()
        try:
            async with self.db.transaction() as session:
                if await repository.email_exists(session, email):
                    raise AlreadyExists("An account with this email already exists.", code="EMAIL_TAKEN")
                user = User(email=email, password_hash=password_hash, first_name=first_name, last_name=last_name,
                            phone="", role="CUSTOMER", status="ACTIVE", email_verified=False, mfa_enabled=False,
                            created_at=now, updated_at=now)
                session.add(user)
                await session.flush()
                await repository.add_one_time_token(
                    session, user.id, domain.PURPOSE_EMAIL_VERIFICATION, domain.token_digest(verification_token),
                    now, now + timedelta(hours=self.settings.email_verification_ttl_hours),
                )
                tokens = await self._start_session(session, user, request.client, now)
        except IntegrityError:  # a concurrent registration of the same email won
            raise AlreadyExists("An account with this email already exists.", code="EMAIL_TAKEN") from None
        self._send_verification(email, verification_token)
        return auth_pb2.RegisterResponse(user=user_proto(user), tokens=tokens)

    async def Login(self, request, context):
        problems = Problems()
        email = request.email.strip().lower()
        if not email:
            problems.add("email", "is required")
        elif len(email) > domain.EMAIL_MAX_CHARS or domain.has_control_chars(email):
            problems.add("email", "is not a valid email address")
        if not request.password:
            problems.add("password", "is required")
        if problems:
            raise ValidationError(problems.fields)
        attempt_id = await self._begin_attempt(email)
        async with self.db.session() as session:
            user = await repository.get_user_by_email(session, email)
        if user is None or user.status == domain.STATUS_DEACTIVATED:
            await self._verify(request.password, self.runtime.dummy_password_hash)  # same time as a real check
            raise Unauthenticated(INVALID_CREDENTIALS, code="INVALID_CREDENTIALS")
        if not await self._verify(request.password, user.password_hash):
            raise Unauthenticated(INVALID_CREDENTIALS, code="INVALID_CREDENTIALS")
        # The password is right: what follows may reveal the account's state.
        if user.status == domain.STATUS_SUSPENDED:
            await self._forget_attempt(attempt_id)
            raise PermissionDenied("This account is suspended.", code="ACCOUNT_SUSPENDED")
        if user.mfa_enabled:
            if not request.otp.strip():
                await self._forget_attempt(attempt_id)
                raise Unauthenticated("A one-time code from your authenticator app is required.",
                                      code="MFA_REQUIRED")
            if not await self._second_factor_ok(user, request.otp):
                raise Unauthenticated("The one-time code is not valid.", code="INVALID_OTP")
        now = utcnow()
        async with self.db.transaction() as session:
            await repository.clear_attempts(session, email)
            tokens = await self._start_session(session, user, request.client, now)
        return auth_pb2.LoginResponse(user=user_proto(user), tokens=tokens)

    async def RefreshToken(self, request, context):
        token = request.refresh_token.strip()
        if not token:
            raise Unauthenticated("A refresh token is required.", code="INVALID_REFRESH_TOKEN")
        digest = domain.token_digest(token)
        requested = utcnow()  # before any lock is waited for (SQLite serializes at BEGIN)
        outcome = "invalid"
        tokens = None
        async with self.db.transaction() as session:
            started = await repository.db_clock(session, requested)
            now = utcnow()
            claimed = await repository.claim_refresh_token(session, digest, started)
            if claimed is None:
                known = await repository.find_refresh_token(session, digest)
                if known is not None and known.used_at is not None and known.used_at >= started:
                    # Another refresh with this token was still running when this one started
                    # (several tabs refreshing at once): that one won, this one gets nothing.
                    outcome = "raced"
                elif known is not None:
                    # A used token came back: it was stolen or replayed. End the whole session.
                    await repository.revoke_session(session, known.session_id, "refresh_token_reused", now)
                    outcome = "reused"
            else:
                row = await repository.get_session(session, claimed.session_id)
                user = await repository.get_user(session, row.user_id) if row is not None else None
                if (
                    row is not None and user is not None and row.revoked_at is None and row.expires_at > now
                    and claimed.expires_at > now and user.status == domain.STATUS_ACTIVE
                ):
                    expires_at = now + self._refresh_lifetime  # sliding
                    new_token = domain.new_opaque_token()
                    await repository.add_refresh_token(session, row.id, domain.token_digest(new_token), now,
                                                       expires_at)
                    await repository.touch_session(session, row.id, now, expires_at, request.client.user_agent[:512],
                                                   request.client.ip[:64])
                    tokens = self._tokens(user, row.id, new_token)
                    outcome = "ok"
                    await repository.finish_rotation(session, claimed.id, await repository.db_clock(session, utcnow()))
        if outcome == "reused":
            raise Unauthenticated("This refresh token was already used; the session has been ended.",
                                  code="REFRESH_TOKEN_REUSED")
        if outcome == "raced":
            raise Unauthenticated("This refresh token was used by a concurrent request.",
                                  code="REFRESH_TOKEN_REUSED")
        if tokens is None:
            raise Unauthenticated("The refresh token is not valid.", code="INVALID_REFRESH_TOKEN")
        return auth_pb2.RefreshTokenResponse(tokens=tokens)

    async def Logout(self, request, context):
        caller = current_caller()
        now = utcnow()
        async with self.db.transaction() as session:
            if caller.is_user:
                session_id = caller.session_id or ""
                await repository.revoke_session(session, session_id, "logout", now, user_id=caller.user_id)
            elif request.refresh_token.strip():
                known = await repository.find_refresh_token(session, domain.token_digest(request.refresh_token.strip()))
                if known is None:
                    raise Unauthenticated("The refresh token is not valid.", code="INVALID_REFRESH_TOKEN")
                session_id = known.session_id
                await repository.revoke_session(session, session_id, "logout", now)
            else:
                raise Unauthenticated("Authentication required.")
        return auth_pb2.LogoutResponse(session_id=session_id)

    async def GetCurrentUser(self, request, context):
        user, _ = await self._current_user()
        return auth_pb2.GetCurrentUserResponse(user=user_proto(user))

    # -- sessions ------------------------------------------------------------------------------------

    async def ListSessions(self, request, context):
        caller = require_user()
        async with self.db.session() as session:
            rows = await repository.active_sessions(session, caller.user_id or "", utcnow())
        return auth_pb2.ListSessionsResponse(sessions=[session_proto(row, caller.session_id) for row in rows])

    async def RevokeSession(self, request, context):
        caller = require_user()
        if not domain.is_uuid(request.session_id):
            raise NotFound("Session not found.", code="SESSION_NOT_FOUND")
        async with self.db.transaction() as session:
            revoked = await repository.revoke_session(session, request.session_id, "revoked_by_user", utcnow(),
                                                      user_id=caller.user_id)
        if not revoked:
            raise NotFound("Session not found.", code="SESSION_NOT_FOUND")
        return auth_pb2.RevokeSessionResponse()

    async def RevokeAllSessions(self, request, context):
        caller = require_user()
        async with self.db.transaction() as session:
            ids = await repository.revoke_user_sessions(session, caller.user_id or "", "revoked_by_user", utcnow())
        return auth_pb2.RevokeAllSessionsResponse(revoked_count=len(ids), session_ids=ids)

    # -- passwords and email -------------------------------------------------------------------------

    async def ChangePassword(self, request, context):
        user, current_session = await self._current_user()
        problems = Problems()
        if not request.current_password:
            problems.add("currentPassword", "is required")
        domain.check_password(problems, "newPassword", request.new_password)
        if problems:
            raise ValidationError(problems.fields)
        await self._begin_attempt(user.email)
        if not await self._verify(request.current_password, user.password_hash):
            raise InvalidArgument("The current password is not correct.", code="INVALID_PASSWORD")
        password_hash = await self._hash(request.new_password)
        now = utcnow()
        async with self.db.transaction() as session:
            row = await repository.get_user(session, user.id, for_update=True)
            row.password_hash = password_hash
            row.updated_at = now
            await repository.clear_attempts(session, user.email)
            await repository.revoke_user_sessions(session, user.id, "password_changed", now, keep=current_session)
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
        return auth_pb2.ChangePasswordResponse()

    async def RequestPasswordReset(self, request, context):
        try:
            email = domain.normalize_email(request.email)
        except ValueError:
            return auth_pb2.RequestPasswordResetResponse()  # same answer whatever was sent
        now = utcnow()
        token = domain.new_opaque_token()
        async with self.db.transaction() as session:
            user = await repository.get_user_by_email(session, email)
            if user is None or user.status != domain.STATUS_ACTIVE:
                return auth_pb2.RequestPasswordResetResponse()
            # A newer request voids every older token.
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
            await repository.add_one_time_token(
                session, user.id, domain.PURPOSE_PASSWORD_RESET, domain.token_digest(token), now,
                now + timedelta(minutes=self.settings.password_reset_ttl_minutes),
            )
        self._send_reset(email, token)
        return auth_pb2.RequestPasswordResetResponse()

    async def ResetPassword(self, request, context):
        token = request.token.strip()
        if not token:
            raise InvalidArgument("The token is not valid.", code="INVALID_TOKEN")
        problems = Problems()
        domain.check_password(problems, "newPassword", request.new_password)
        if problems:
            raise ValidationError(problems.fields)
        digest = domain.token_digest(token)
        now = utcnow()
        async with self.db.session() as session:
            usable = await repository.token_is_usable(session, digest, domain.PURPOSE_PASSWORD_RESET, now)
        if not usable:  # don't spend a bcrypt hash on a bad token
            raise InvalidArgument("The token is not valid, used or expired.", code="INVALID_TOKEN")
        password_hash = await self._hash(request.new_password)
        async with self.db.transaction() as session:
            user_id = await repository.consume_one_time_token(session, digest, domain.PURPOSE_PASSWORD_RESET, now)
            user = await repository.get_user(session, user_id, for_update=True) if user_id else None
            if user is None or user.status == domain.STATUS_DEACTIVATED:
                raise InvalidArgument("The token is not valid, used or expired.", code="INVALID_TOKEN")
            user.password_hash = password_hash
            user.email_verified = True  # the reset link proved the mailbox
            user.updated_at = now
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
            await repository.revoke_user_sessions(session, user.id, "password_reset", now)
            await repository.clear_attempts(session, user.email)
        return auth_pb2.ResetPasswordResponse()

    async def VerifyEmail(self, request, context):
        token = request.token.strip()
        now = utcnow()
        async with self.db.transaction() as session:
            user_id = None
            if token:
                user_id = await repository.consume_one_time_token(
                    session, domain.token_digest(token), domain.PURPOSE_EMAIL_VERIFICATION, now
                )
            user = await repository.get_user(session, user_id, for_update=True) if user_id else None
            if user is None:
                raise InvalidArgument("The token is not valid, used or expired.", code="INVALID_TOKEN")
            user.email_verified = True
            user.updated_at = now
        return auth_pb2.VerifyEmailResponse()

    # -- MFA -----------------------------------------------------------------------------------------

    async def SetupMfa(self, request, context):
        user, _ = await self._current_user()
        if user.mfa_enabled:
            raise Conflict("Two-factor authentication is already enabled.", code="MFA_ALREADY_ENABLED")
        secret = domain.new_totp_secret()
        async with self.db.transaction() as session:
            row = await repository.get_user(session, user.id, for_update=True)
            row.mfa_pending_secret = secret
            row.updated_at = utcnow()
        return auth_pb2.SetupMfaResponse(
            secret=secret, otpauth_uri=domain.otpauth_uri(secret, user.email, self.settings.mfa_issuer)
        )

    async def EnableMfa(self, request, context):
        user, _ = await self._current_user()
        if not request.otp.strip():
            raise ValidationError.single("otp", "is required")
        if user.mfa_enabled:
            raise Conflict("Two-factor authentication is already enabled.", code="MFA_ALREADY_ENABLED")
        if not user.mfa_pending_secret:
            raise Conflict("Call MFA setup first.", code="MFA_NOT_SET_UP")
        now = utcnow()
        codes = domain.new_recovery_codes()
        async with self.db.transaction() as session:
            row = await repository.get_user(session, user.id, for_update=True)
            secret = row.mfa_pending_secret or ""
            step = domain.match_totp(secret, request.otp, now, row.mfa_last_step) if not row.mfa_enabled else None
            if step is None or not await repository.claim_totp_step(session, user.id, step):
                raise InvalidArgument("The one-time code is not valid.", code="INVALID_OTP")
            await session.refresh(row)
            row.mfa_secret = secret
            row.mfa_pending_secret = None
            row.mfa_enabled = True
            row.updated_at = now
            await repository.replace_recovery_codes(session, user.id, [domain.recovery_code_digest(c) for c in codes])
        return auth_pb2.EnableMfaResponse(recovery_codes=codes)

    async def DisableMfa(self, request, context):
        user, _ = await self._current_user()
        otp, recovery_code = request.otp.strip(), request.recovery_code.strip()
        if not otp and not recovery_code:
            raise ValidationError({"otp": ["an otp or a recoveryCode is required"]})
        if not user.mfa_enabled:
            raise Conflict("Two-factor authentication is not enabled.", code="MFA_NOT_ENABLED")
        now = utcnow()
        async with self.db.transaction() as session:
            if otp:
                step = domain.match_totp(user.mfa_secret or "", otp, now, user.mfa_last_step)
                if step is None or not await repository.claim_totp_step(session, user.id, step):
                    raise InvalidArgument("The one-time code is not valid.", code="INVALID_OTP")
            elif not await repository.consume_recovery_code(session, user.id,
                                                            domain.recovery_code_digest(recovery_code), now):
                raise InvalidArgument("The recovery code is not valid.", code="INVALID_RECOVERY_CODE")
            row = await repository.get_user(session, user.id, for_update=True)
            await session.refresh(row)
            row.mfa_enabled = False
            row.mfa_secret = None
            row.mfa_pending_secret = None
            row.updated_at = now
            await repository.delete_recovery_codes(session, user.id)
        return auth_pb2.DisableMfaResponse()

    # -- profile -------------------------------------------------------------------------------------

    async def UpdateProfile(self, request, context):
        user, _ = await self._current_user()
        problems = Problems()
        changes = {}
        if request.HasField("first_name"):
            changes["first_name"] = domain.clean_name(problems, "firstName", request.first_name)
        if request.HasField("last_name"):
            changes["last_name"] = domain.clean_name(problems, "lastName", request.last_name)
        if request.HasField("phone"):
            changes["phone"] = domain.clean_phone(problems, "phone", request.phone)
        if problems:
            raise ValidationError(problems.fields)
        async with self.db.transaction() as session:
            row = await repository.get_user(session, user.id, for_update=True)
            for name, value in changes.items():
                setattr(row, name, value)
            if changes:
                row.updated_at = utcnow()
        return auth_pb2.UpdateProfileResponse(user=user_proto(row))

    async def DeleteAccount(self, request, context):
        user, _ = await self._current_user()
        await self._check_own_password(user, request.password)
        now = utcnow()
        async with self.db.transaction() as session:
            row = await repository.get_user(session, user.id, for_update=True)
            row.status = domain.STATUS_DEACTIVATED
            row.updated_at = now
            ids = await repository.revoke_user_sessions(session, user.id, "account_deleted", now)
            await repository.void_tokens(session, user.id, domain.PURPOSE_PASSWORD_RESET, now)
        return auth_pb2.DeleteAccountResponse(session_ids=ids)

    # -- addresses -----------------------------------------------------------------------------------

    async def ListAddresses(self, request, context):
        caller = require_user()
        async with self.db.session() as session:
            rows = await repository.list_addresses(session, caller.user_id or "")
        return auth_pb2.ListAddressesResponse(addresses=[address_proto(row) for row in rows])

    async def CreateAddress(self, request, context):
        caller = require_user()
        given = request.address
        cleaned, problems = domain.clean_address_fields({name: getattr(given, name) for name in ADDRESS_ATTRIBUTES})
        if problems:
            raise ValidationError(problems.fields)
        async with self.db.transaction() as session:
            # Locks the user row: address changes of one user are serialized (one default, the limit).
            await repository.get_user(session, caller.user_id or "", for_update=True)
            count = await repository.count_addresses(session, caller.user_id or "")
            if count >= domain.MAX_ADDRESSES_PER_USER:
                raise Conflict(f"At most {domain.MAX_ADDRESSES_PER_USER} addresses per account.",
                               code="ADDRESS_LIMIT_REACHED")
            is_default = count == 0 or given.is_default
            if is_default:
                await repository.clear_default_address(session, caller.user_id or "")
            row = Address(user_id=caller.user_id, is_default=is_default, created_at=utcnow(), **cleaned)
            session.add(row)
            await session.flush()
        return auth_pb2.CreateAddressResponse(address=address_proto(row))

    async def UpdateAddress(self, request, context):
        caller = require_user()
        given = {name: getattr(request, name) for name in ADDRESS_ATTRIBUTES if request.HasField(name)}
        cleaned, problems = domain.clean_address_fields(given)
        if problems:
            raise ValidationError(problems.fields)
        if not domain.is_uuid(request.address_id):
            raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
        async with self.db.transaction() as session:
            await repository.get_user(session, caller.user_id or "", for_update=True)
            row = await repository.get_address(session, caller.user_id or "", request.address_id)
            if row is None:
                raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
            if request.HasField("is_default"):
                if request.is_default and not row.is_default:
                    await repository.clear_default_address(session, caller.user_id or "")
                    row.is_default = True
                elif not request.is_default and row.is_default:
                    raise ValidationError.single(
                        "isDefault", "exactly one address is the default: make another address the default instead"
                    )
            for name, value in cleaned.items():
                setattr(row, name, value)
        return auth_pb2.UpdateAddressResponse(address=address_proto(row))

    async def DeleteAddress(self, request, context):
        caller = require_user()
        if not domain.is_uuid(request.address_id):
            raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
        async with self.db.transaction() as session:
            await repository.get_user(session, caller.user_id or "", for_update=True)
            row = await repository.get_address(session, caller.user_id or "", request.address_id)
            if row is None:
                raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
            was_default = row.is_default
            await session.delete(row)
            await session.flush()
            if was_default:
                successor = await repository.oldest_address(session, caller.user_id or "")
                if successor is not None:
                    successor.is_default = True
        return auth_pb2.DeleteAddressResponse()

    async def GetAddress(self, request, context):
        require_service()
        if not (domain.is_uuid(request.user_id) and domain.is_uuid(request.address_id)):
            raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
        async with self.db.session() as session:
            row = await repository.get_address(session, request.user_id, request.address_id)
        if row is None:
            raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND")
        return auth_pb2.GetAddressResponse(address=address_proto(row))

    # -- admin ---------------------------------------------------------------------------------------

    async def ListUsers(self, request, context):
        require_admin()
        size = page_size(request.page_size)
        role = auth_pb2.Role.Name(request.role).removeprefix("ROLE_") if request.role else None
        status = auth_pb2.UserStatus.Name(request.status).removeprefix("USER_STATUS_") if request.status else None
        query = request.query.strip()
        if len(query) > 100:
            raise ValidationError.single("q", "must be at most 100 characters")
        if domain.has_control_chars(query):
            raise ValidationError.single("q", "must not contain control characters")
        query_fp = fingerprint(role=role, status=status, q=query.lower())
        position = self.page_tokens.decode(request.page_token, query_fp)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position["c"]), str(position["i"]))
            except (KeyError, TypeError, ValueError):
                raise InvalidArgument("The page token is not valid for this query.", code="INVALID_PAGE_TOKEN",
                                      fields={"pageToken": ["is not valid for this query"]}) from None
        async with self.db.session() as session:
            rows, total = await repository.list_users(
                session, role=role, status=status, query=query, after=after, limit=size + 1
            )
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_token = self.page_tokens.encode({"c": last.created_at.isoformat(), "i": last.id}, query_fp)
        return auth_pb2.ListUsersResponse(users=[user_proto(u) for u in rows], next_page_token=next_token,
                                          total_size=total)

    async def GetUser(self, request, context):
        require_admin()
        if not domain.is_uuid(request.user_id):
            raise NotFound("User not found.", code="USER_NOT_FOUND")
        async with self.db.session() as session:
            user = await repository.get_user(session, request.user_id)
        if user is None:
            raise NotFound("User not found.", code="USER_NOT_FOUND")
        return auth_pb2.GetUserResponse(user=user_proto(user))

    async def UpdateUser(self, request, context):
        caller = require_admin()
        role = auth_pb2.Role.Name(request.role).removeprefix("ROLE_") if request.role else None
        status = auth_pb2.UserStatus.Name(request.status).removeprefix("USER_STATUS_") if request.status else None
        if role is None and status is None:
            raise ValidationError({"role": ["give a role or a status"], "status": ["give a role or a status"]})
        if not domain.is_uuid(request.user_id):
            raise NotFound("User not found.", code="USER_NOT_FOUND")
        now = utcnow()
        async with self.db.transaction() as session:
            user = await repository.get_user(session, request.user_id, for_update=True)
            if user is None:
                raise NotFound("User not found.", code="USER_NOT_FOUND")
            if user.id == caller.user_id and ((role and role != user.role) or (status and status != user.status)):
                raise Conflict("Administrators cannot change their own role or status.", code="CANNOT_CHANGE_SELF")
            change = domain.UserChange(
                role=role if role and role != user.role else None,
                status=status if status and status != user.status else None,
            )
            if change.role:
                user.role = change.role
            if change.status:
                user.status = change.status
            if change.role or change.status:
                user.updated_at = now
            if change.ends_sessions:
                await repository.revoke_user_sessions(session, user.id, "changed_by_admin", now)
        return auth_pb2.UpdateUserResponse(user=user_proto(user))

    # -- keys and revocations ------------------------------------------------------------------------

    async def GetJwks(self, request, context):
        return auth_pb2.GetJwksResponse(jwks_json=self.runtime.signing_key.jwks_json())

    async def ListRevocations(self, request, context):
        require_service()
        now = utcnow()
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else now - timedelta(minutes=16)
        async with self.db.session() as session:
            rows = await repository.revoked_since(session, since)
        return auth_pb2.ListRevocationsResponse(
            sessions=[auth_pb2.RevokedSession(session_id=sid, revoke_time=to_timestamp(at)) for sid, at in rows],
            as_of=to_timestamp(now - REVOCATION_POLL_OVERLAP),
        )
