"""The texts of the emails the auth service sends (verification, password reset, security
notices), in one place.

The use cases build a Mail here and hand it to Runtime.send_mail_later (sent in the background)."""

from __future__ import annotations

from dataclasses import dataclass

from services.auth.config import AuthSettings


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str


def _link(settings: AuthSettings, path: str, token: str) -> str:
    return f"{settings.frontend_url.rstrip('/')}/{path}?token={token}"


def verification(settings: AuthSettings, token: str) -> Mail:
    link = _link(settings, "verify-email", token)
    return Mail(
        "Verify your email",
        f"Welcome to the shop!\n\nConfirm your email address by opening this link:\n\n{link}\n\n"
        f"The link is valid for {settings.email_verification_ttl_hours} hours. "
        "If you did not create an account, ignore this message.\n",
    )


def password_reset(settings: AuthSettings, token: str) -> Mail:
    link = _link(settings, "reset-password", token)
    return Mail(
        "Reset your password",
        "Someone (hopefully you) asked to reset the password of your shop account.\n\n"
        f"Choose a new password here:\n\n{link}\n\n"
        f"The link is valid for {settings.password_reset_ttl_minutes} minutes and works once. "
        "If you did not ask for it, ignore this message: your password stays as it is.\n",
    )


def _account_link(settings: AuthSettings) -> str:
    return f"{settings.frontend_url.rstrip('/')}/account"


def password_changed(settings: AuthSettings) -> Mail:
    return Mail(
        "Your password was changed",
        "The password of your shop account was just changed.\n\n"
        "If it was you, there is nothing to do. If it was not, reset your password at once "
        f'("Forgot password" on the sign-in page) and review your sessions: {_account_link(settings)}\n',
    )


def mfa_changed(settings: AuthSettings, *, enabled: bool) -> Mail:
    change = "turned on" if enabled else "turned off"
    return Mail(
        f"Two-factor authentication was {change}",
        f"Two-factor authentication was just {change} for your shop account.\n\n"
        "If it was you, there is nothing to do. If it was not, change your password at once and "
        f"review your sessions and security settings: {_account_link(settings)}\n",
    )
