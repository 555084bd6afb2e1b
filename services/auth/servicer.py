"""RPC handlers of the auth service, a thin adapter: check the caller, call the use case, map the
result. The use cases are accounts.py, sessions.py, mfa.py, addresses.py and admin.py (each owns
the transaction of its writes); the mapping is mapping.py."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from services.auth.mapping import (
    ADDRESS_ATTRIBUTES,
    PROFILE_ATTRIBUTES,
    ROLES,
    USER_STATUSES,
    address_fields,
    address_proto,
    given_fields,
    revocations_proto,
    session_proto,
    tokens_proto,
    user_proto,
)
from services.auth.sessions import Client
from shop.auth.v1 import auth_pb2, auth_pb2_grpc
from shop.lib.context import current_caller, require_admin, require_caller, require_user

if TYPE_CHECKING:
    from services.auth.server import Runtime


def client_of(request) -> Client:
    return Client(user_agent=request.client.user_agent, ip=request.client.ip)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.accounts = runtime.accounts
        self.sessions = runtime.sessions
        self.mfa = runtime.mfa
        self.addresses = runtime.addresses
        self.admin = runtime.admin

    # -- accounts (accounts.py) ----------------------------------------------------------------------

    async def Register(self, request, context):
        user, tokens = await self.accounts.register(
            request.email, request.password, request.first_name, request.last_name, client_of(request)
        )
        return auth_pb2.RegisterResponse(user=user_proto(user), tokens=tokens_proto(tokens))

    async def Login(self, request, context):
        user, tokens = await self.accounts.login(request.email, request.password, request.otp, client_of(request))
        return auth_pb2.LoginResponse(user=user_proto(user), tokens=tokens_proto(tokens))

    async def GetCurrentUser(self, request, context):
        user = await self.accounts.current_user(require_user())
        return auth_pb2.GetCurrentUserResponse(user=user_proto(user))

    async def UpdateProfile(self, request, context):
        user = await self.accounts.update_profile(require_user(), given_fields(request, PROFILE_ATTRIBUTES))
        return auth_pb2.UpdateProfileResponse(user=user_proto(user))

    async def DeleteAccount(self, request, context):
        ids = await self.accounts.delete_account(require_user(), request.password)
        return auth_pb2.DeleteAccountResponse(session_ids=ids)

    async def ChangePassword(self, request, context):
        await self.accounts.change_password(require_user(), request.current_password, request.new_password)
        return auth_pb2.ChangePasswordResponse()

    async def RequestPasswordReset(self, request, context):
        await self.accounts.request_password_reset(request.email)
        return auth_pb2.RequestPasswordResetResponse()

    async def ResetPassword(self, request, context):
        await self.accounts.reset_password(request.token, request.new_password)
        return auth_pb2.ResetPasswordResponse()

    async def VerifyEmail(self, request, context):
        await self.accounts.verify_email(request.token)
        return auth_pb2.VerifyEmailResponse()

    # -- sessions (sessions.py) ----------------------------------------------------------------------

    async def RefreshToken(self, request, context):
        tokens = await self.sessions.refresh(request.refresh_token, client_of(request))
        return auth_pb2.RefreshTokenResponse(tokens=tokens_proto(tokens))

    async def Logout(self, request, context):
        session_id = await self.sessions.logout(current_caller(), request.refresh_token)
        return auth_pb2.LogoutResponse(session_id=session_id)

    async def ListSessions(self, request, context):
        caller = require_user()
        rows = await self.sessions.list(caller)
        return auth_pb2.ListSessionsResponse(sessions=[session_proto(row, caller.session_id) for row in rows])

    async def RevokeSession(self, request, context):
        await self.sessions.revoke(require_user(), request.session_id)
        return auth_pb2.RevokeSessionResponse()

    async def RevokeAllSessions(self, request, context):
        ids = await self.sessions.revoke_all(require_user())
        return auth_pb2.RevokeAllSessionsResponse(revoked_count=len(ids), session_ids=ids)

    async def ListRevocations(self, request, context):
        require_caller("auth.ListRevocations")
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        rows, as_of = await self.sessions.revocations(since)
        return revocations_proto(rows, as_of)

    async def GetJwks(self, request, context):
        return auth_pb2.GetJwksResponse(jwks_json=self.runtime.signing_key.jwks_json())

    # -- MFA (mfa.py) --------------------------------------------------------------------------------

    async def SetupMfa(self, request, context):
        secret, uri = await self.mfa.setup(require_user())
        return auth_pb2.SetupMfaResponse(secret=secret, otpauth_uri=uri)

    async def EnableMfa(self, request, context):
        codes = await self.mfa.enable(require_user(), request.otp)
        return auth_pb2.EnableMfaResponse(recovery_codes=codes)

    async def DisableMfa(self, request, context):
        await self.mfa.disable(require_user(), request.otp, request.recovery_code)
        return auth_pb2.DisableMfaResponse()

    # -- addresses (addresses.py) --------------------------------------------------------------------

    async def ListAddresses(self, request, context):
        rows = await self.addresses.list(require_user())
        return auth_pb2.ListAddressesResponse(addresses=[address_proto(row) for row in rows])

    async def CreateAddress(self, request, context):
        row = await self.addresses.create(require_user(), address_fields(request.address), request.address.is_default)
        return auth_pb2.CreateAddressResponse(address=address_proto(row))

    async def UpdateAddress(self, request, context):
        caller = require_user()
        is_default = request.is_default if request.HasField("is_default") else None
        row = await self.addresses.update(
            caller, request.address_id, given_fields(request, ADDRESS_ATTRIBUTES), is_default
        )
        return auth_pb2.UpdateAddressResponse(address=address_proto(row))

    async def DeleteAddress(self, request, context):
        await self.addresses.delete(require_user(), request.address_id)
        return auth_pb2.DeleteAddressResponse()

    async def GetAddress(self, request, context):
        require_caller("auth.GetAddress")
        row = await self.addresses.get_for_service(request.user_id, request.address_id)
        return auth_pb2.GetAddressResponse(address=address_proto(row))

    # -- admin (admin.py) ----------------------------------------------------------------------------

    async def ListUsers(self, request, context):
        require_admin()
        rows, next_token, total = await self.admin.list_users(
            role=ROLES.optional(request.role),
            status=USER_STATUSES.optional(request.status),
            query=request.query,
            size=request.page_size,
            page_token=request.page_token,
        )
        return auth_pb2.ListUsersResponse(
            users=[user_proto(u) for u in rows], next_page_token=next_token, total_size=total
        )

    async def GetUser(self, request, context):
        require_admin()
        user = await self.admin.get_user(request.user_id)
        return auth_pb2.GetUserResponse(user=user_proto(user))

    async def UpdateUser(self, request, context):
        caller = require_admin()
        user = await self.admin.update_user(
            caller, request.user_id, role=ROLES.optional(request.role), status=USER_STATUSES.optional(request.status)
        )
        return auth_pb2.UpdateUserResponse(user=user_proto(user))
