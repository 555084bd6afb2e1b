"""/api/v1/auth/*: registration, login, token refresh and logout, sessions, passwords, email
verification and TOTP two-factor authentication (auth service)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response

from gateway.deps import GatewayState, Principal, client_ip, current_user, get_state, is_https, optional_user
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.schemas.common import data, envelope, page, page_of
from gateway.schemas.users import (
    ChangePasswordBody,
    DisableMfaBody,
    ForgotPasswordBody,
    LoginBody,
    MfaSetup,
    OtpBody,
    RecoveryCodes,
    RefreshBody,
    RefreshedTokens,
    RegisterBody,
    ResetPasswordBody,
    RevokedCount,
    Session,
    TokenBody,
    User,
    UserAndTokens,
    session_json,
    tokens_json,
    user_json,
)
from shop.auth.v1 import auth_pb2

router = APIRouter(prefix="/api/v1", tags=["auth"])

REFRESH_COOKIE = "refreshToken"
REFRESH_COOKIE_PATH = "/api/v1/auth"
SET_COOKIE = {
    "Set-Cookie": {
        "description": "The httpOnly, SameSite=Strict refreshToken cookie (path /api/v1/auth).",
        "schema": {"type": "string"},
    }
}


def client_info(request: Request) -> auth_pb2.ClientInfo:
    return auth_pb2.ClientInfo(user_agent=request.headers.get("user-agent", "")[:512], ip=client_ip(request))


def with_refresh_cookie(response: Response, request: Request, tokens: auth_pb2.Tokens) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=tokens.refresh_expires_in or None,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def without_refresh_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )


def token_answer(
    response: Response, request: Request, tokens: auth_pb2.Tokens, user: auth_pb2.User | None = None
) -> dict[str, Any]:
    """The answer of register and login (the user and the tokens) and of refresh (the tokens): the
    refresh token also goes in the httpOnly cookie."""
    with_refresh_cookie(response, request, tokens)
    signed_in = {"user": user_json(user)} if user is not None else {}
    return data({**signed_in, "tokens": tokens_json(tokens)})


def refresh_token_from(request: Request, body_token: str | None) -> str:
    return (body_token or request.cookies.get(REFRESH_COOKIE) or "").strip()


# -- registration, login, tokens ------------------------------------------------------------------


@router.post(
    "/auth/register",
    operation_id="auth-register",
    status_code=201,
    summary="Create an account (CUSTOMER) and sign in",
    response_model=envelope(UserAndTokens),
    responses={201: {"headers": SET_COOKIE}, **errors(409, e409="EMAIL_TAKEN")},
)
async def register(body: RegisterBody, request: Request, response: Response, state: GatewayState = Depends(get_state)):
    result = await state.clients.auth.Register(
        auth_pb2.RegisterRequest(
            email=body.email,
            password=body.password,
            first_name=body.first_name,
            last_name=body.last_name,
            client=client_info(request),
        )
    )
    return token_answer(response, request, result.tokens, result.user)


@router.post(
    "/auth/login",
    operation_id="auth-login",
    summary="Sign in with email and password (and a TOTP code when MFA is on)",
    response_model=envelope(UserAndTokens),
    responses={
        200: {"headers": SET_COOKIE},
        **errors(
            401,
            403,
            429,
            e401="INVALID_CREDENTIALS, MFA_REQUIRED or INVALID_OTP",
            e403="ACCOUNT_SUSPENDED",
            e429="TOO_MANY_ATTEMPTS (Retry-After) or RATE_LIMITED",
        ),
    },
)
async def login(body: LoginBody, request: Request, response: Response, state: GatewayState = Depends(get_state)):
    result = await state.clients.auth.Login(
        auth_pb2.LoginRequest(email=body.email, password=body.password, otp=body.otp or "", client=client_info(request))
    )
    return token_answer(response, request, result.tokens, result.user)


@router.post(
    "/auth/refresh",
    operation_id="auth-refresh",
    summary="Rotate a refresh token (body or cookie) for new tokens",
    response_model=envelope(RefreshedTokens),
    responses={
        200: {"headers": SET_COOKIE},
        **errors(401, e401="INVALID_REFRESH_TOKEN or REFRESH_TOKEN_REUSED (the session is ended)"),
    },
)
async def refresh(
    request: Request, response: Response, body: RefreshBody | None = None, state: GatewayState = Depends(get_state)
):
    token = refresh_token_from(request, body.refresh_token if body else None)
    if not token:
        raise ApiError.validation({"refreshToken": ["is required (in the body or the refreshToken cookie)"]})
    result = await state.clients.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=token, client=client_info(request))
    )
    return token_answer(response, request, result.tokens)


@router.post(
    "/auth/logout",
    operation_id="auth-logout",
    status_code=204,
    response_class=Response,
    summary="End the current session (access and refresh token)",
    description="The access token, or (when it has expired) the refresh token in the body or cookie.",
    responses=errors(401),
    openapi_extra={"security": [{"bearerAuthOptional": []}]},
)
async def logout(
    request: Request, response: Response, body: RefreshBody | None = None, state: GatewayState = Depends(get_state)
) -> None:
    try:
        principal = await optional_user(request, state)
    except ApiError:
        # An expired or ended access token: the refresh token (body or cookie) can still end the session.
        principal = None
        if not refresh_token_from(request, body.refresh_token if body else None):
            raise
    if principal is not None:
        result = await state.clients.auth.Logout(auth_pb2.LogoutRequest(), metadata=principal.metadata)
    else:
        token = refresh_token_from(request, body.refresh_token if body else None)
        if not token:
            raise ApiError(401, "UNAUTHENTICATED", "Authentication required.")
        result = await state.clients.auth.Logout(auth_pb2.LogoutRequest(refresh_token=token))
    if result.session_id:
        # Every gateway replica refuses the session's access tokens within a second (gateway/shared.py).
        await state.revoke(result.session_id)
    without_refresh_cookie(response, request)


@router.get("/auth/me", operation_id="auth-me", summary="The signed-in user", response_model=envelope(User))
async def me(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=principal.metadata)
    return data(user_json(response.user))


# -- sessions -------------------------------------------------------------------------------------


@router.get(
    "/auth/sessions",
    operation_id="auth-list-sessions",
    summary="The user's live sessions (never a token)",
    response_model=page_of(Session),
)
async def list_sessions(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=principal.metadata)
    items = [session_json(s) for s in response.sessions]
    return page(items, "", len(items))


@router.delete(
    "/auth/sessions",
    operation_id="auth-revoke-all-sessions",
    summary="Revoke every session of the user",
    response_model=envelope(RevokedCount),
)
async def revoke_all_sessions(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.RevokeAllSessions(
        auth_pb2.RevokeAllSessionsRequest(), metadata=principal.metadata
    )
    await state.revoke(*response.session_ids, principal.caller.session_id or "")
    return data({"revokedCount": response.revoked_count})


@router.delete(
    "/auth/sessions/{sessionId}",
    operation_id="auth-revoke-session",
    status_code=204,
    response_class=Response,
    summary="Revoke one session of the user",
    responses=errors(404, e404="SESSION_NOT_FOUND"),
)
async def revoke_session(
    session_id: str = Path(alias="sessionId"),
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> None:
    await state.clients.auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=session_id), metadata=principal.metadata
    )
    await state.revoke(session_id)  # the user's own session (the service checked)


# -- passwords and email --------------------------------------------------------------------------


@router.post(
    "/auth/password/change",
    operation_id="auth-change-password",
    status_code=204,
    response_class=Response,
    summary="Change the password; other sessions end",
    responses=errors(
        429,
        e400="INVALID_PASSWORD (wrong current password) or VALIDATION_ERROR",
        e429="TOO_MANY_ATTEMPTS (Retry-After) or RATE_LIMITED",
    ),
)
async def change_password(
    body: ChangePasswordBody, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> None:
    await state.clients.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=body.current_password, new_password=body.new_password),
        metadata=principal.metadata,
    )


@router.post(
    "/auth/password/forgot",
    operation_id="auth-forgot-password",
    status_code=202,
    response_class=Response,
    summary="Email a password-reset link (always 202, with no body)",
    responses={202: {"description": "Accepted: a known email gets a reset link. No body."}},
)
async def forgot_password(body: ForgotPasswordBody, state: GatewayState = Depends(get_state)) -> None:
    await state.clients.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=body.email))


@router.post(
    "/auth/password/reset",
    operation_id="auth-reset-password",
    status_code=204,
    response_class=Response,
    summary="Set a new password with a reset token",
    responses=errors(400, e400="INVALID_TOKEN (bad, used or expired) or VALIDATION_ERROR"),
)
async def reset_password(body: ResetPasswordBody, state: GatewayState = Depends(get_state)) -> None:
    await state.clients.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(token=body.token, new_password=body.new_password)
    )


@router.post(
    "/auth/email/verify",
    operation_id="auth-verify-email",
    status_code=204,
    response_class=Response,
    summary="Confirm the email address with the emailed token",
    responses=errors(400, e400="INVALID_TOKEN or VALIDATION_ERROR"),
)
async def verify_email(body: TokenBody, state: GatewayState = Depends(get_state)) -> None:
    await state.clients.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=body.token))


# -- MFA ------------------------------------------------------------------------------------------


@router.post(
    "/auth/mfa/setup",
    operation_id="auth-mfa-setup",
    summary="Start TOTP setup: a new secret and its otpauth:// URI",
    response_model=envelope(MfaSetup),
    responses=errors(409, e409="MFA_ALREADY_ENABLED"),
)
async def mfa_setup(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.SetupMfa(auth_pb2.SetupMfaRequest(), metadata=principal.metadata)
    return data({"secret": response.secret, "otpauthUri": response.otpauth_uri})


@router.post(
    "/auth/mfa/enable",
    operation_id="auth-mfa-enable",
    summary="Turn TOTP on with a current code; returns 10 single-use recovery codes",
    response_model=envelope(RecoveryCodes),
    responses=errors(400, 409, e400="INVALID_OTP or VALIDATION_ERROR", e409="MFA_ALREADY_ENABLED or MFA_NOT_SET_UP"),
)
async def mfa_enable(
    body: OtpBody, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    response = await state.clients.auth.EnableMfa(auth_pb2.EnableMfaRequest(otp=body.otp), metadata=principal.metadata)
    return data({"recoveryCodes": list(response.recovery_codes)})


@router.post(
    "/auth/mfa/disable",
    operation_id="auth-mfa-disable",
    status_code=204,
    response_class=Response,
    summary="Turn TOTP off with a code or a recovery code",
    responses=errors(400, 409, e400="INVALID_OTP or VALIDATION_ERROR", e409="MFA_NOT_ENABLED"),
)
async def mfa_disable(
    body: DisableMfaBody, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> None:
    await state.clients.auth.DisableMfa(
        auth_pb2.DisableMfaRequest(otp=body.otp or "", recovery_code=body.recovery_code or ""),
        metadata=principal.metadata,
    )
