"""Address rules every service shares: the country (ISO 3166-1 alpha-2, from `pycountry`), the
postal code and the phone number (from `phonenumbers`, Google's libphonenumber).

The postal code: 1..20 letters, digits, spaces or hyphens once trimmed, and at most 40 characters
as sent (the documented maxLength counts the spaces around it too).

API.md: `country (ISO 3166-1 alpha-2), phone?` in every Address. The phone rule:
- optional (empty is fine); at most 32 characters (the column); digits, spaces and `+ ( ) . - /`;
- a *possible* number (libphonenumber's length check, not its stricter "assigned range" check,
  so a new range or a test number is never refused) for the address's country, or in
  international form (`+49 30 1234567`) when no country is known (a profile phone);
- stored as the person typed it (trimmed), never reformatted.
"""

from __future__ import annotations

import re

import phonenumbers
import pycountry

from shop.lib.validation import FieldErrors

# The officially assigned ISO 3166-1 alpha-2 codes.
COUNTRY_CODES: frozenset[str] = frozenset(country.alpha_2 for country in pycountry.countries)
COUNTRY_MESSAGE = "must be an ISO 3166-1 alpha-2 country code such as US or DE"

POSTAL_CODE_MAX_CHARS = 40
POSTAL_CODE_MESSAGE = "must be 1..20 letters, digits, spaces or hyphens"
_POSTAL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,19}$")

PHONE_MAX_CHARS = 32
PHONE_MESSAGE = "must be a phone number such as +1 555 0100"
_PHONE_CHARS = re.compile(r"^[0-9+() ./-]+$")


def normalize_country(value: str) -> str:
    """`" de "` -> `"DE"` (not checked)."""
    return (value or "").strip().upper()


def is_country(code: str) -> bool:
    return code in COUNTRY_CODES


def clean_country(errors: FieldErrors, field_name: str, value: str) -> str:
    """The normalised code; a problem is added when it is not an assigned ISO code."""
    code = normalize_country(value)
    if code not in COUNTRY_CODES:
        errors.add(field_name, COUNTRY_MESSAGE)
    return code


def phone_problem(value: str, country: str | None = None) -> str | None:
    """What is wrong with a (trimmed) phone number, or None when it is acceptable or empty."""
    if not value:
        return None
    if len(value) > PHONE_MAX_CHARS:
        return f"must be at most {PHONE_MAX_CHARS} characters"
    if not _PHONE_CHARS.match(value):
        return PHONE_MESSAGE
    region = country if country in COUNTRY_CODES else None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return PHONE_MESSAGE
    return None if phonenumbers.is_possible_number(number) else PHONE_MESSAGE


def clean_phone(errors: FieldErrors, field_name: str, value: str, country: str | None = None) -> str:
    """The trimmed number; a problem is added when it is not a possible phone number."""
    value = (value or "").strip()
    problem = phone_problem(value, normalize_country(country) if country else None)
    if problem:
        errors.add(field_name, problem)
    return value


def clean_postal_code(errors: FieldErrors, field_name: str, value: str) -> str:
    """The trimmed code; a problem is added when it is empty, longer than POSTAL_CODE_MAX_CHARS
    as sent, or not 1..20 letters, digits, spaces or hyphens."""
    sent = len(value)
    value = value.strip()
    if not value:
        errors.add(field_name, "is required")
    elif sent > POSTAL_CODE_MAX_CHARS:
        errors.add(field_name, f"must be at most {POSTAL_CODE_MAX_CHARS} characters")
    elif not _POSTAL_CODE.fullmatch(value):
        errors.add(field_name, POSTAL_CODE_MESSAGE)
    return value
