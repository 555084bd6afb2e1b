"""/api/v1/auth/*: registration, login, token refresh and logout, sessions, passwords, email
verification and TOTP two-factor authentication (auth service)."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from gateway.deps import (
    ApiModel,
    GatewayState,
    Principal,
    client_ip,
    current_user,
    get_state,
    is_https,
    ok,
    optional_user,
    page,
    rfc3339,
)
from gateway.errors import ApiError
from gateway.responses import JSONResponse
from shop.auth.v1 import auth_pb2
from shop.lib.enums import EnumNames

router = APIRouter(prefix="/api/v1", tags=["auth"])

ROLES = EnumNames(auth_pb2.Role)
USER_STATUSES = EnumNames(auth_pb2.UserStatus)
REFRESH_COOKIE = "refreshToken"
REFRESH_COOKIE_PATH = "/api/v1/auth"


# -- shapes ---------------------------------------------------------------------------------------

def user_json(user: auth_pb2.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "phone": user.phone or None,
        "role": ROLES.name(user.role),
        "status": USER_STATUSES.name(user.status),
        "emailVerified": user.email_verified,
        "mfaEnabled": user.mfa_enabled,
        "createdAt": rfc3339(user.create_time),
    }


def tokens_json(tokens: auth_pb2.Tokens) -> dict[str, Any]:
    return {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "tokenType": tokens.token_type or "Bearer",
        "expiresIn": tokens.expires_in,
    }


def session_json(session: auth_pb2.Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "createdAt": rfc3339(session.create_time),
        "lastUsedAt": rfc3339(session.last_used_time),
        "userAgent": session.user_agent,
        "ip": session.ip,
        "current": session.current,
    }


def client_info(request: Request) -> auth_pb2.ClientInfo:
    return auth_pb2.ClientInfo(user_agent=request.headers.get("user-agent", "")[:512], ip=client_ip(request))


_R = TypeVar("_R", bound=Response)  # the response given is the response returned


def with_refresh_cookie(response: _R, request: Request, tokens: auth_pb2.Tokens) -> _R:
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=tokens.refresh_expires_in or None,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


def without_refresh_cookie(response: Response, request: Request) -> Response:
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, httponly=True, samesite="strict",
                           secure=is_https(request))
    return response


def refresh_token_from(request: Request, body_token: str | None) -> str:
    return (body_token or request.cookies.get(REFRESH_COOKIE) or "").strip()


# -- documented response shapes (OpenAPI) ----------------------------------------------------------

T = TypeVar("T")


class OutModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class UserOut(OutModel):
    id: str
    email: str
    first_name: str
    last_name: str
    phone: str | None
    role: Literal["CUSTOMER", "SELLER", "ADMIN"]
    status: Literal["ACTIVE", "SUSPENDED", "DEACTIVATED"]
    email_verified: bool
    mfa_enabled: bool
    created_at: str


class TokensOut(OutModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class UserAndTokensOut(OutModel):
    user: UserOut
    tokens: TokensOut


class TokensOnlyOut(OutModel):
    tokens: TokensOut


class SessionOut(OutModel):
    id: str
    created_at: str
    last_used_at: str
    user_agent: str
    ip: str
    current: bool


class RevokedCountOut(OutModel):
    revoked_count: int


class MfaSetupOut(OutModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(OutModel):
    recovery_codes: list[str]


class Data(BaseModel, Generic[T]):
    data: T


class PageInfo(OutModel):
    next_page_token: str | None
    total_size: int


class Page(BaseModel, Generic[T]):
    data: list[T]
    page: PageInfo


class ErrorOut(OutModel):
    code: str
    message: str
    details: dict[str, Any] | None = None
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorOut


_ERROR_TEXT = {
    400: "VALIDATION_ERROR (details.fields) or an operation's own code",
    401: "UNAUTHENTICATED, or the operation's code (INVALID_CREDENTIALS, MFA_REQUIRED, ...)",
    403: "FORBIDDEN / ACCOUNT_SUSPENDED",
    404: "not found (also another user's resource)",
    409: "conflict (EMAIL_TAKEN, MFA_ALREADY_ENABLED, ...)",
    429: "too many attempts (Retry-After)",
}


def documented(model: Any = None, status: int = 200, errors: tuple[int, ...] = (400, 401)) -> dict[int | str, Any]:
    """`responses=` for a route: its success shape and the error envelope for its error statuses."""
    responses: dict[int | str, Any] = {}
    if model is not None:
        responses[status] = {"model": model}
    for code in errors:
        responses[code] = {"model": ErrorEnvelope, "description": _ERROR_TEXT.get(code, "error")}
    return responses


# -- bodies ---------------------------------------------------------------------------------------

class RegisterBody(ApiModel):
    email: str
    password: str
    first_name: str
    last_name: str


class LoginBody(ApiModel):
    email: str
    password: str
    otp: str | None = None


class RefreshBody(ApiModel):
    refresh_token: str | None = None


class ChangePasswordBody(ApiModel):
    current_password: str
    new_password: str


class ForgotPasswordBody(ApiModel):
    email: str


class ResetPasswordBody(ApiModel):
    token: str
    new_password: str


class TokenBody(ApiModel):
    token: str


class OtpBody(ApiModel):
    otp: str


class DisableMfaBody(ApiModel):
    otp: str | None = None
    recovery_code: str | None = None


# -- registration, login, tokens ------------------------------------------------------------------

@router.post("/auth/register", status_code=201, summary="Create an account (CUSTOMER) and sign in",
             responses=documented(Data[UserAndTokensOut], 201, (400, 409)))
async def register(body: RegisterBody, request: Request, state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.Register(
        auth_pb2.RegisterRequest(email=body.email, password=body.password, first_name=body.first_name,
                                 last_name=body.last_name, client=client_info(request))
    )
    result = ok({"user": user_json(response.user), "tokens": tokens_json(response.tokens)}, 201)
    return with_refresh_cookie(result, request, response.tokens)


@router.post("/auth/login", summary="Sign in with email and password (and a TOTP code when MFA is on)",
             responses=documented(Data[UserAndTokensOut], 200, (400, 401, 403, 429)))
async def login(body: LoginBody, request: Request, state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.Login(
        auth_pb2.LoginRequest(email=body.email, password=body.password, otp=body.otp or "",
                              client=client_info(request))
    )
    result = ok({"user": user_json(response.user), "tokens": tokens_json(response.tokens)})
    return with_refresh_cookie(result, request, response.tokens)


@router.post("/auth/refresh", summary="Rotate a refresh token (body or cookie) for new tokens",
             responses=documented(Data[TokensOnlyOut], 200, (400, 401)))
async def refresh(request: Request, body: RefreshBody | None = None,
                  state: GatewayState = Depends(get_state)) -> JSONResponse:
    token = refresh_token_from(request, body.refresh_token if body else None)
    if not token:
        raise ApiError.validation({"refreshToken": ["is required (in the body or the refreshToken cookie)"]})
    response = await state.clients.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=token, client=client_info(request))
    )
    return with_refresh_cookie(ok({"tokens": tokens_json(response.tokens)}), request, response.tokens)


@router.post("/auth/logout", status_code=204, summary="End the current session (access and refresh token)",
             responses=documented(None, 204, (401,)))
async def logout(request: Request, body: RefreshBody | None = None,
                 state: GatewayState = Depends(get_state)) -> Response:
    try:
        principal = await optional_user(request, state)
    except ApiError:
        # An expired or ended access token: the refresh token (body or cookie) can still end the session.
        principal = None
        if not refresh_token_from(request, body.refresh_token if body else None):
            raise
    if principal is not None:
        response = await state.clients.auth.Logout(auth_pb2.LogoutRequest(), metadata=principal.metadata)
    else:
        token = refresh_token_from(request, body.refresh_token if body else None)
        if not token:
            raise ApiError(401, "UNAUTHENTICATED", "Authentication required.")
        response = await state.clients.auth.Logout(auth_pb2.LogoutRequest(refresh_token=token))
    if response.session_id:
        # Every gateway replica refuses the session's access tokens within a second (gateway/shared.py).
        await state.revoke(response.session_id)
    return without_refresh_cookie(Response(status_code=204), request)


@router.get("/auth/me", summary="The signed-in user", responses=documented(Data[UserOut], 200, (401,)))
async def me(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=principal.metadata)
    return ok(user_json(response.user))


# -- sessions -------------------------------------------------------------------------------------

@router.get("/auth/sessions", summary="The user's live sessions (never a token)",
            responses=documented(Page[SessionOut], 200, (401,)))
async def list_sessions(principal: Principal = Depends(current_user),
                        state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=principal.metadata)
    items = [session_json(s) for s in response.sessions]
    return page(items, "", len(items))


@router.delete("/auth/sessions", summary="Revoke every session of the user",
               responses=documented(Data[RevokedCountOut], 200, (401,)))
async def revoke_all_sessions(principal: Principal = Depends(current_user),
                              state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.RevokeAllSessions(auth_pb2.RevokeAllSessionsRequest(),
                                                          metadata=principal.metadata)
    await state.revoke(*response.session_ids, principal.caller.session_id or "")
    return ok({"revokedCount": response.revoked_count})


@router.delete("/auth/sessions/{session_id}", status_code=204, summary="Revoke one session of the user",
               responses=documented(None, 204, (401, 404)))
async def revoke_session(session_id: str, principal: Principal = Depends(current_user),
                         state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=session_id),
                                           metadata=principal.metadata)
    await state.revoke(session_id)  # the user's own session (the service checked)
    return Response(status_code=204)


# -- passwords and email --------------------------------------------------------------------------

@router.post("/auth/password/change", status_code=204, summary="Change the password; other sessions end",
             responses=documented(None, 204, (400, 401, 429)))
async def change_password(body: ChangePasswordBody, principal: Principal = Depends(current_user),
                          state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=body.current_password, new_password=body.new_password),
        metadata=principal.metadata,
    )
    return Response(status_code=204)


@router.post("/auth/password/forgot", status_code=202, summary="Email a password-reset link (always 202)",
             responses=documented(None, 202, (400,)))
async def forgot_password(body: ForgotPasswordBody, state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=body.email))
    return Response(status_code=202)


@router.post("/auth/password/reset", status_code=204, summary="Set a new password with a reset token",
             responses=documented(None, 204, (400,)))
async def reset_password(body: ResetPasswordBody, state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=body.token, new_password=body.new_password)
    )
    return Response(status_code=204)


@router.post("/auth/email/verify", status_code=204, summary="Confirm the email address with the emailed token",
             responses=documented(None, 204, (400,)))
async def verify_email(body: TokenBody, state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=body.token))
    return Response(status_code=204)


# -- MFA ------------------------------------------------------------------------------------------

@router.post("/auth/mfa/setup", summary="Start TOTP setup: a new secret and its otpauth:// URI",
             responses=documented(Data[MfaSetupOut], 200, (401, 409)))
async def mfa_setup(principal: Principal = Depends(current_user),
                    state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.SetupMfa(auth_pb2.SetupMfaRequest(), metadata=principal.metadata)
    return ok({"secret": response.secret, "otpauthUri": response.otpauth_uri})


@router.post("/auth/mfa/enable", summary="Turn TOTP on with a current code; returns 10 single-use recovery codes",
             responses=documented(Data[RecoveryCodesOut], 200, (400, 401, 409)))
async def mfa_enable(body: OtpBody, principal: Principal = Depends(current_user),
                     state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.EnableMfa(auth_pb2.EnableMfaRequest(otp=body.otp),
                                                  metadata=principal.metadata)
    return ok({"recoveryCodes": list(response.recovery_codes)})


@router.post("/auth/mfa/disable", status_code=204, summary="Turn TOTP off with a code or a recovery code",
             responses=documented(None, 204, (400, 401, 409)))
async def mfa_disable(body: DisableMfaBody, principal: Principal = Depends(current_user),
                      state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.DisableMfa(
        auth_pb2.DisableMfaRequest(otp=body.otp or "", recovery_code=body.recovery_code or ""),
        metadata=principal.metadata,
    )
    return Response(status_code=204)
