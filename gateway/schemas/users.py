"""Auth and users (API.md "Auth and users"): the User, Tokens, Session and Address shapes, built
here from their protos, and the request bodies of /api/v1/auth/* and /api/v1/users/*.

`Address` is the one address shape (API.md Conventions): a saved address as returned
(`SavedAddress`) may be sent back wherever an address is sent (`AddressInput`), its read-only
fields ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from pydantic import ConfigDict, Field

from gateway.schemas.common import NON_BLANK, ApiModel, DateTime, OutModel, Uuid, omit_or, rfc3339
from shop.auth.v1 import auth_pb2
from shop.lib.addresses import COUNTRY_CODES
from shop.lib.enums import EnumNames

ROLES = EnumNames(auth_pb2.Role)
USER_STATUSES = EnumNames(auth_pb2.UserStatus)
RoleName = Literal["CUSTOMER", "SELLER", "ADMIN"]
StatusName = Literal["ACTIVE", "SUSPENDED", "DEACTIVATED"]

# Text a person types: no control characters, and something besides spaces when required.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
OPTIONAL_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
POSTAL_CODE_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9 -]{0,19}\s*$"
PHONE_PATTERN = r"^\s*(\+?[0-9][0-9 ().-]{3,30})?\s*$"


# -- responses ------------------------------------------------------------------------------------


class User(OutModel):
    id: Uuid
    email: str
    first_name: str
    last_name: str
    phone: str | None
    role: RoleName
    status: StatusName
    email_verified: bool
    mfa_enabled: bool
    created_at: DateTime


class Tokens(OutModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserAndTokens(OutModel):
    user: User
    tokens: Tokens


class RefreshedTokens(OutModel):
    tokens: Tokens


class Session(OutModel):
    id: Uuid
    created_at: DateTime
    last_used_at: DateTime | None
    user_agent: str
    ip: str
    current: bool = Field(description="The session of the token that asked.")


class RevokedCount(OutModel):
    revoked_count: int


class MfaSetup(OutModel):
    secret: str = Field(description="Base32 TOTP secret (RFC 6238, 30 s, 6 digits).")
    otpauth_uri: str = Field(description="otpauth:// URI for an authenticator app (a QR code).")


class RecoveryCodes(OutModel):
    recovery_codes: list[str] = Field(description="10 single-use codes; shown once.")


class Address(OutModel):
    """The one address shape (an order's shippingAddress has no label)."""

    label: str | None = Field(default=None, description="A saved address's name, e.g. Home.")
    first_name: str
    last_name: str
    line1: str
    line2: str | None
    city: str
    state: str | None
    postal_code: str
    country: str = Field(description="ISO 3166-1 alpha-2.")
    phone: str | None


class SavedAddress(Address):
    """An address of the user's address book: `Address` plus its read-only fields."""

    id: Uuid
    label: str
    is_default: bool


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


class _AddressMessage(Protocol):  # auth's Address and orders' ShippingAddress alike
    first_name: str
    last_name: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str
    phone: str


def address_json(address: _AddressMessage) -> dict[str, Any]:
    """The one `Address` shape (an order's shippingAddress; the body of a saved address)."""
    return {
        "firstName": address.first_name,
        "lastName": address.last_name,
        "line1": address.line1,
        "line2": address.line2 or None,
        "city": address.city,
        "state": address.state or None,
        "postalCode": address.postal_code,
        "country": address.country,
        "phone": address.phone or None,
    }


def saved_address_json(address: auth_pb2.Address) -> dict[str, Any]:
    """`SavedAddress`: the address with its id, label and default flag."""
    return {"id": address.id, "label": address.label, **address_json(address), "isDefault": address.is_default}


# -- request bodies -------------------------------------------------------------------------------
# The services check these rules and answer 400 VALIDATION_ERROR with their own messages; the
# bodies only document them (`rule`), so the answers stay the services' and the document tells a
# client generator (or schemathesis) what is valid.


def rule(default: Any = ..., *, description: str | None = None, **constraints: Any) -> Any:
    """A field whose JSON Schema constraints are documented, enforced by the service."""
    return Field(default, description=description, json_schema_extra=constraints or None)


def name_rule(max_length: int, default: Any = ..., **extra: Any) -> Any:
    return rule(default, maxLength=max_length, pattern=NAME_PATTERN, **extra)


def text_rule(max_length: int) -> Any:
    return rule(None, maxLength=max_length, pattern=OPTIONAL_TEXT_PATTERN)


def _text(max_length: int, pattern: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": pattern}


COUNTRY_RULE: dict[str, Any] = {
    "enum": sorted(COUNTRY_CODES),
    "description": "ISO 3166-1 alpha-2 (case and spaces are forgiven).",
}
PHONE_RULE: dict[str, Any] = {
    "pattern": PHONE_PATTERN,
    "description": "A possible number for the country, e.g. +1 555 0100; empty or null: none.",
}


class AddressInput(ApiModel):
    """An address as sent: a new one, or a saved address exactly as the API returned it (its
    read-only `id`, `createdAt` and `updatedAt` are ignored; `isDefault` is honoured when saving
    an address and ignored on an order). Any other field is 400 VALIDATION_ERROR."""

    label: str | None = name_rule(50, None, description="Required when saving an address; ignored on an order.")
    first_name: str = Field(max_length=200, json_schema_extra={"maxLength": 50, "pattern": NAME_PATTERN})
    last_name: str = Field(max_length=200, json_schema_extra={"maxLength": 50, "pattern": NAME_PATTERN})
    line1: str = Field(max_length=200, json_schema_extra={"pattern": NAME_PATTERN})
    line2: str | None = Field(None, max_length=200, json_schema_extra={"pattern": OPTIONAL_TEXT_PATTERN})
    city: str = Field(max_length=200, json_schema_extra={"maxLength": 100, "pattern": NAME_PATTERN})
    state: str | None = Field(
        None, max_length=200, json_schema_extra={"maxLength": 100, "pattern": OPTIONAL_TEXT_PATTERN}
    )
    postal_code: str = Field(max_length=200, json_schema_extra={"maxLength": 40, "pattern": POSTAL_CODE_PATTERN})
    country: str = Field(max_length=200, json_schema_extra=COUNTRY_RULE)
    phone: str | None = Field(None, max_length=200, json_schema_extra=PHONE_RULE)
    id: str | None = rule(None, description="Read-only: ignored.", readOnly=True)
    is_default: bool | None = rule(None, description="Saving an address: make it the default. Ignored on an order.")
    created_at: str | None = rule(None, description="Read-only: ignored.", readOnly=True)
    updated_at: str | None = rule(None, description="Read-only: ignored.", readOnly=True)


def address_fields(address: AddressInput) -> dict[str, str]:
    """An address as sent, by the field names auth's Address and orders' ShippingAddress share
    (absent optional text as "")."""
    return {
        "first_name": address.first_name,
        "last_name": address.last_name,
        "line1": address.line1,
        "line2": address.line2 or "",
        "city": address.city,
        "state": address.state or "",
        "postal_code": address.postal_code,
        "country": address.country,
        "phone": address.phone or "",
    }


class AddressPatch(ApiModel):
    """Only the fields sent change; `line2`, `state` and `phone` are cleared with null."""

    label: Annotated[str | None, omit_or(_text(50, NAME_PATTERN))] = None
    first_name: Annotated[str | None, omit_or(_text(50, NAME_PATTERN))] = None
    last_name: Annotated[str | None, omit_or(_text(50, NAME_PATTERN))] = None
    line1: Annotated[str | None, omit_or(_text(200, NAME_PATTERN))] = None
    line2: str | None = text_rule(200)
    city: Annotated[str | None, omit_or(_text(100, NAME_PATTERN))] = None
    state: str | None = text_rule(100)
    postal_code: Annotated[str | None, omit_or(_text(40, POSTAL_CODE_PATTERN))] = None
    country: Annotated[str | None, omit_or({"type": "string", **COUNTRY_RULE})] = None
    phone: str | None = rule(None, **PHONE_RULE)
    is_default: Annotated[bool | None, omit_or({"type": "boolean"})] = None


PASSWORD_RULE: dict[str, Any] = {
    "minLength": 8,
    # Only what a pattern can say exactly: the letters and the digit may be of any script (é is a
    # lower-case letter, as Python's str.islower says), which no portable JSON Schema regex can express.
    "pattern": r"^[^\x00]*$",
    "description": "8+ characters, at most 72 bytes of UTF-8, with a lower-case letter, an upper-case "
    "letter and a digit (of any script: é and É count); never truncated.",
}
REQUIRED_TEXT: dict[str, Any] = {"minLength": 1, "pattern": NON_BLANK}


class RegisterBody(ApiModel):
    email: str = rule(maxLength=254, format="email", description="Trimmed and lower-cased.")
    password: str = rule(**PASSWORD_RULE)
    first_name: str = name_rule(50)
    last_name: str = name_rule(50)


class LoginBody(ApiModel):
    email: str = rule(**REQUIRED_TEXT)
    password: str = rule(minLength=1)
    otp: str | None = rule(None, description="The current TOTP code when MFA is on.")


class RefreshBody(ApiModel):
    refresh_token: str | None = rule(None, description="Else the refreshToken cookie is used.")


class ChangePasswordBody(ApiModel):
    current_password: str = rule(minLength=1)
    new_password: str = rule(**PASSWORD_RULE)


class ForgotPasswordBody(ApiModel):
    email: str


class ResetPasswordBody(ApiModel):
    token: str
    new_password: str = rule(**PASSWORD_RULE)


class TokenBody(ApiModel):
    token: str


class OtpBody(ApiModel):
    otp: str = rule(**REQUIRED_TEXT)


class DisableMfaBody(ApiModel):
    """A current TOTP code or one of the recovery codes."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["otp"]}, {"required": ["recoveryCode"]}]})
    otp: Annotated[str | None, omit_or({"type": "string", **REQUIRED_TEXT})] = None
    recovery_code: Annotated[str | None, omit_or({"type": "string", **REQUIRED_TEXT})] = None


class ProfilePatch(ApiModel):
    first_name: Annotated[str | None, omit_or(_text(50, NAME_PATTERN))] = None
    last_name: Annotated[str | None, omit_or(_text(50, NAME_PATTERN))] = None
    phone: str | None = rule(
        None, pattern=PHONE_PATTERN, description="International form, e.g. +49 30 1234567; null clears it."
    )


class PasswordBody(ApiModel):
    password: str = rule(minLength=1)


class UserPatch(ApiModel):
    """A role, a status, or both; either may be left out, not sent as null (400 VALIDATION_ERROR)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})
    role: Annotated[RoleName | None, omit_or({"enum": ["CUSTOMER", "SELLER", "ADMIN"]})] = None
    status: Annotated[StatusName | None, omit_or({"enum": ["ACTIVE", "SUSPENDED", "DEACTIVATED"]})] = None
