"""Rules of the auth service: pure functions, no I/O, no gRPC, no FastAPI.

Input validation (emails, passwords, names, addresses; problems collected in shop.lib.validation's
FieldErrors, countries and phones by shop.lib.addresses), password hashing, opaque tokens, the
refresh-token rotation rule, TOTP, recovery codes, the login lockout window, the address-default
rule and what an admin's change to a user means.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import bcrypt
import pyotp
from email_validator import EmailNotValidError, validate_email

from shop.lib.addresses import clean_country, clean_phone, clean_postal_code
from shop.lib.validation import FieldErrors

ROLES = ("CUSTOMER", "SELLER", "ADMIN")
STATUS_ACTIVE = "ACTIVE"
STATUS_SUSPENDED = "SUSPENDED"
STATUS_DEACTIVATED = "DEACTIVATED"
STATUSES = (STATUS_ACTIVE, STATUS_SUSPENDED, STATUS_DEACTIVATED)

PURPOSE_PASSWORD_RESET = "password_reset"
PURPOSE_EMAIL_VERIFICATION = "email_verification"

PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit: longer passwords are refused, never truncated
NAME_MAX_CHARS = 50
EMAIL_MAX_CHARS = 254
MAX_ADDRESSES_PER_USER = 20
RECOVERY_CODE_COUNT = 10

TOTP_DIGITS = 6
TOTP_PERIOD_SECONDS = 30
# Codes of the previous and the next time-step are accepted too (clock drift).
TOTP_VALID_WINDOW = 1

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# -- validation ---------------------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased; ValueError with a message when it is not an email address."""
    email = raw.strip().lower()
    if not email:
        raise ValueError("is required")
    if len(email) > EMAIL_MAX_CHARS:
        raise ValueError(f"must be at most {EMAIL_MAX_CHARS} characters")
    try:
        validate_email(email, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        raise ValueError("is not a valid email address") from None
    return email


def is_uuid(value: str) -> bool:
    """Ids are UUID strings; anything else names nothing (and never reaches a query)."""
    return bool(_UUID.match(value))


def has_control_chars(value: str) -> bool:
    return bool(_CONTROL_CHARS.search(value))


def password_problems(password: str) -> list[str]:
    """What the password policy finds wrong (empty when acceptable). Never truncates."""
    problems = []
    if len(password) < PASSWORD_MIN_CHARS:
        problems.append(f"must be at least {PASSWORD_MIN_CHARS} characters")
    if len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        problems.append(f"must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8")
    if not any(ch.islower() for ch in password):
        problems.append("must contain a lower-case letter")
    if not any(ch.isupper() for ch in password):
        problems.append("must contain an upper-case letter")
    if not any(ch.isdigit() for ch in password):
        problems.append("must contain a digit")
    if "\x00" in password:
        problems.append("must not contain NUL characters")
    return problems


def check_password(problems: FieldErrors, field_name: str, password: str) -> None:
    for message in password_problems(password):
        problems.add(field_name, message)


def clean_name(
    problems: FieldErrors, field_name: str, value: str, *, max_chars: int = NAME_MAX_CHARS, required: bool = True
) -> str:
    """The trimmed text; at most `max_chars` as sent (the documented maxLength counts every character)."""
    sent = len(value)
    value = value.strip()
    if not value:
        if required:
            problems.add(field_name, "is required")
        return value
    if sent > max_chars:
        problems.add(field_name, f"must be at most {max_chars} characters")
    if _CONTROL_CHARS.search(value):
        problems.add(field_name, "must not contain control characters")
    return value


ADDRESS_TEXT_FIELDS: dict[str, tuple[str, int, bool]] = {
    # attribute: (REST name, max chars, required)
    "label": ("label", 50, True),
    "first_name": ("firstName", NAME_MAX_CHARS, True),
    "last_name": ("lastName", NAME_MAX_CHARS, True),
    "line1": ("line1", 200, True),
    "line2": ("line2", 200, False),
    "city": ("city", 100, True),
    "state": ("state", 100, False),
}


def clean_address_fields(values: dict[str, str], country: str | None = None) -> tuple[dict[str, str], FieldErrors]:
    """Validates the given address attributes (a full address or a patch); returns cleaned values.
    The phone must be a possible number for the address's country: the one given, else `country`
    (the stored one, for a patch that changes the phone only)."""
    problems = FieldErrors()
    cleaned: dict[str, str] = {}
    if "country" in values:
        cleaned["country"] = country = clean_country(problems, "country", values["country"])
    for attribute, value in values.items():
        if attribute in ADDRESS_TEXT_FIELDS:
            rest_name, max_chars, required = ADDRESS_TEXT_FIELDS[attribute]
            cleaned[attribute] = clean_name(problems, rest_name, value, max_chars=max_chars, required=required)
        elif attribute == "postal_code":
            cleaned[attribute] = clean_postal_code(problems, "postalCode", value)
        elif attribute == "phone":
            cleaned[attribute] = clean_phone(problems, "phone", value, country)
    return cleaned, problems


# -- passwords ----------------------------------------------------------------------------------


def hash_password(password: str, rounds: int) -> str:
    """bcrypt; the caller has checked the policy (≤ 72 bytes), so nothing is ever truncated."""
    encoded = password.encode("utf-8")
    if len(encoded) > PASSWORD_MAX_BYTES:
        raise ValueError("password longer than 72 bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds)).decode()


def needs_rehash(password_hash: str, rounds: int) -> bool:
    """A hash made with another bcrypt cost than the configured one (e.g. the cost was raised):
    re-hashed at the next successful login, the only moment the password is known."""
    parts = password_hash.split("$")  # "", "2b", "12", salt+digest
    return len(parts) < 4 or not parts[2].isdigit() or int(parts[2]) != rounds


def verify_password(password: str, password_hash: str) -> bool:
    encoded = password.encode("utf-8")
    if len(encoded) > PASSWORD_MAX_BYTES:
        # Still spend the time of a verify, then refuse: no truncation, no timing hint.
        bcrypt.checkpw(b"x", password_hash.encode())
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode())
    except ValueError:
        return False


# -- opaque tokens --------------------------------------------------------------------------------


def new_opaque_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored for an opaque token: its SHA-256 (hex). The token itself is never stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- refresh-token rotation -----------------------------------------------------------------------


class Refresh(Enum):
    """How a refresh ends: rotated, or refused for one of three reasons."""

    ROTATED = "rotated"
    INVALID = "invalid"  # unknown, expired, or its session or user may no longer sign in
    RACED = "raced"  # a concurrent refresh with the same token won
    REUSED = "reused"  # a used token came back: stolen or replayed, the session must end


def unclaimed_refresh(*, known: bool, used_at: datetime | None, started: datetime) -> Refresh:
    """Why a refresh token could not be claimed. A token whose rotation finished at or after this
    refresh started was being rotated concurrently (several tabs refreshing at once): that one won,
    this one gets nothing. Any other used token is a replay and ends the session."""
    if not known:
        return Refresh.INVALID
    if used_at is not None and used_at >= started:
        return Refresh.RACED
    return Refresh.REUSED


def may_rotate(
    *,
    session_revoked_at: datetime | None,
    session_expires_at: datetime,
    token_expires_at: datetime,
    session_ends_at: datetime | None = None,
    user_status: str,
    now: datetime,
) -> bool:
    """A claimed token rotates only while its session is live (not revoked, not expired, not past
    its absolute end), the token unexpired and the user ACTIVE."""
    return (
        session_revoked_at is None
        and session_expires_at > now
        and token_expires_at > now
        and (session_ends_at is None or session_ends_at > now)
        and user_status == STATUS_ACTIVE
    )


def session_expiry(now: datetime, lifetime: timedelta, *, started_at: datetime, max_lifetime: timedelta) -> datetime:
    """Sessions slide: every login or refresh pushes the end a full lifetime ahead, but never past
    `max_lifetime` after the session started (a stolen refresh token kept fresh still dies)."""
    return min(now + lifetime, started_at + max_lifetime)


# -- login lockout --------------------------------------------------------------------------------


def lockout_retry_after(
    failures: Iterable[datetime], now: datetime, *, max_failures: int, window: timedelta
) -> int | None:
    """Seconds until a login may be tried again, or None when it may be tried now.

    Locked while `max_failures` or more failures lie within the window before `now`; it opens
    when enough of them have left the window."""
    recent = sorted((t for t in failures if now - t < window), reverse=True)
    if len(recent) < max_failures:
        return None
    # Once the max_failures-th most recent failure leaves the window, fewer than max remain.
    opens_at = recent[max_failures - 1] + window
    return max(1, math.ceil((opens_at - now).total_seconds()))


# -- TOTP (RFC 6238) and recovery codes -------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer
    )


def totp_step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_PERIOD_SECONDS


def totp_code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS).at(step * TOTP_PERIOD_SECONDS)


def looks_like_totp(code: str) -> bool:
    return len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()


def match_totp(secret: str, code: str, now: datetime, last_used_step: int | None) -> int | None:
    """The time-step `code` belongs to (within ±1 step of now), or None. A step at or before the
    last one used is refused: no code is accepted twice (RFC 6238 §5.2)."""
    code = code.strip()
    if not looks_like_totp(code):
        return None
    current = totp_step(now)
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        if hmac.compare_digest(totp_code(secret, step), code):
            return step
    return None


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Codes like `ab3d-7kq2-mx9p-t4ve`: 16 base32 characters, 80 random bits each."""
    codes = []
    for _ in range(count):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def normalize_recovery_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def recovery_code_digest(code: str) -> str:
    return token_digest(normalize_recovery_code(code))


# -- addresses -----------------------------------------------------------------------------------


def new_address_is_default(existing: int, requested: bool) -> bool:
    """The first address is the default; a later one only when asked (exactly one default)."""
    return existing == 0 or requested


# -- users ---------------------------------------------------------------------------------------


def may_sign_in(status: str | None) -> bool:
    """Unknown and deactivated accounts look alike at login: the same INVALID_CREDENTIALS."""
    return status is not None and status != STATUS_DEACTIVATED


@dataclass(frozen=True)
class UserChange:
    """What an admin's update really changes (a role or status equal to the current one is no change)."""

    role: str | None
    status: str | None

    @classmethod
    def between(cls, *, role: str, status: str, wanted_role: str | None, wanted_status: str | None) -> UserChange:
        return cls(
            role=wanted_role if wanted_role and wanted_role != role else None,
            status=wanted_status if wanted_status and wanted_status != status else None,
        )

    @property
    def changes_anything(self) -> bool:
        return self.role is not None or self.status is not None

    @property
    def ends_sessions(self) -> bool:
        """Suspension, deactivation and role changes end every session: no token keeps old rights."""
        return self.role is not None or self.status in (STATUS_SUSPENDED, STATUS_DEACTIVATED)
