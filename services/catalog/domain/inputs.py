"""What a request may say: ids, product fields, categories and reviews. Each validator collects
every problem (`shop.lib.validation.FieldErrors`) and returns the values normalised."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from services.catalog.domain.products import ACTIVE, DRAFT
from shop.lib.errors import ValidationError
from shop.lib.validation import FieldErrors

SKU_MAX = 64
NAME_MAX = 200
DESCRIPTION_MAX = 5000
BRAND_MAX = 100
MAX_IMAGES = 10
URL_MAX = 2048
MAX_PRICE_CENTS = 100_000_000_00  # 100 million in major units
MAX_STOCK = 1_000_000
CATEGORY_SLUG_MAX = 64
CATEGORY_NAME_MAX = 100
REVIEW_TITLE_MAX = 120
REVIEW_BODY_MAX = 5000
MAX_BATCH_IDS = 200

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")


# -- ids and text ------------------------------------------------------------------------------


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def parse_uuid(value: str, field_name: str = "productId") -> str:
    """A canonical lower-case UUID string; a malformed id is 400 VALIDATION_ERROR (documented)."""
    if not is_uuid(value):
        raise ValidationError.single(field_name, "must be a UUID")
    return value.lower()


def check_text(
    errors: FieldErrors, name: str, value: str, *, min_len: int, max_len: int, one_line: bool = False
) -> str:
    """Trimmed text of at least min_len characters, at most max_len as sent (the documented
    maxLength counts every character); `one_line`: no control characters in it."""
    sent = len(value)
    value = value.strip()
    if one_line:
        errors.no_control(name, value)
    else:
        errors.no_nul(name, value)
    if len(value) < min_len:
        errors.add(name, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters")
    elif sent > max_len:
        errors.add(name, f"must be at most {max_len} characters")
    return value


# -- products ----------------------------------------------------------------------------------


def valid_image_url(url: str) -> bool:
    if not url or len(url) > URL_MAX or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_price(errors: FieldErrors, name: str, value: int) -> None:
    if value <= 0:
        errors.add(name, "must be greater than 0")
    elif value > MAX_PRICE_CENTS:
        errors.add(name, f"must be at most {MAX_PRICE_CENTS}")


def _check_code(
    errors: FieldErrors, name: str, value: str, *, max_len: int, pattern: re.Pattern, rule: str, trim: bool = True
) -> str:
    """A SKU or a slug: not empty, at most `max_len`, the whole of it matching `pattern` (else
    `rule`); trimmed first unless `trim` is False (a category slug is an identifier taken as sent)."""
    code = value.strip() if trim else value
    if not code:
        errors.add(name, "must not be empty")
    elif len(code) > max_len:
        errors.add(name, f"must be at most {max_len} characters")
    elif not pattern.fullmatch(code):
        errors.add(name, rule)
    return code


def _sku(errors: FieldErrors, value: str) -> str:
    rule = "may contain only letters, digits, '.', '_' and '-'"
    return _check_code(errors, "sku", value, max_len=SKU_MAX, pattern=SKU_PATTERN, rule=rule)


def _name(errors: FieldErrors, value: str) -> str:
    return check_text(errors, "name", value, min_len=1, max_len=NAME_MAX)


def _description(errors: FieldErrors, value: str) -> str:
    return check_text(errors, "description", value, min_len=0, max_len=DESCRIPTION_MAX)


def _price(errors: FieldErrors, value: int) -> int:
    _check_price(errors, "priceCents", value)
    return value


def _compare_at_price(errors: FieldErrors, value: int | None) -> int | None:
    if value is not None:
        _check_price(errors, "compareAtPriceCents", value)
    return value


def _currency(errors: FieldErrors, value: str) -> str:
    if not CURRENCY_PATTERN.fullmatch(value):
        errors.add("currency", "must be a 3-letter upper-case ISO 4217 code")
    return value


def _category_slug(errors: FieldErrors, value: str) -> str:
    slug = value.strip()
    if not slug:
        errors.add("categorySlug", "must not be empty")
    return slug


def _brand(errors: FieldErrors, value: str | None) -> str | None:
    brand = (value or "").strip()
    if len(brand) > BRAND_MAX:
        errors.add("brand", f"must be at most {BRAND_MAX} characters")
    return brand or None


def _images(errors: FieldErrors, images: list[str]) -> list[str]:
    if len(images) > MAX_IMAGES:
        errors.add("images", f"at most {MAX_IMAGES} images")
    for index, url in enumerate(images):
        if not valid_image_url(url):
            errors.add("images", f"item {index} must be an http(s) URL of at most {URL_MAX} characters")
    return list(images)


def _stock(errors: FieldErrors, stock: int) -> int:
    if stock < 0:
        errors.add("stock", "must be at least 0")
    elif stock > MAX_STOCK:
        errors.add("stock", f"must be at most {MAX_STOCK}")
    return stock


# Each product field's check, in the order its problems are reported: (field, REST name, check).
_PRODUCT_FIELDS: tuple[tuple[str, str, Callable[[FieldErrors, Any], Any]], ...] = (
    ("sku", "sku", _sku),
    ("name", "name", _name),
    ("description", "description", _description),
    ("price_cents", "priceCents", _price),
    ("compare_at_price_cents", "compareAtPriceCents", _compare_at_price),
    ("currency", "currency", _currency),
    ("category_slug", "categorySlug", _category_slug),
    ("brand", "brand", _brand),
    ("images", "images", _images),
    ("stock", "stock", _stock),
)
_REST_NAMES = {name: rest_name for name, rest_name, _ in _PRODUCT_FIELDS}
_NO_NUL_FIELDS = ("sku", "currency", "category_slug", "brand")  # the text the checks above keep as sent
_REQUIRED_FIELDS = ("sku", "name", "price_cents", "currency", "category_slug")


def validate_product(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validates the given product fields (all of them when creating; the changed ones on update).
    Returns them normalised. Cross-field rules are checked by `check_prices`."""
    errors = FieldErrors()
    for name in _NO_NUL_FIELDS:
        errors.no_nul(_REST_NAMES[name], fields.get(name))
    out: dict[str, Any] = {}
    for name, _, check in _PRODUCT_FIELDS:
        if name in fields:
            out[name] = check(errors, fields[name])
    if "status" in fields:
        status = fields["status"] or (ACTIVE if creating else None)
        if status not in (ACTIVE, DRAFT):
            errors.add("status", "must be ACTIVE or DRAFT (DELETE archives a product)")
        out["status"] = status
    if creating:
        for required in _REQUIRED_FIELDS:
            if required not in fields:
                errors.add(_REST_NAMES[required], "is required")
    errors.raise_if_any()
    return out


def check_prices(price_cents: int, compare_at_price_cents: int | None) -> None:
    if compare_at_price_cents is not None and compare_at_price_cents <= price_cents:
        raise ValidationError.single("compareAtPriceCents", "must be greater than priceCents")


# -- categories and reviews --------------------------------------------------------------------


def validate_category(slug: str, name: str, parent_slug: str) -> tuple[str, str, str | None]:
    errors = FieldErrors()
    rule = "must be lower-case letters and digits separated by single hyphens"
    slug = _check_code(errors, "slug", slug, max_len=CATEGORY_SLUG_MAX, pattern=SLUG_PATTERN, rule=rule, trim=False)
    name = check_text(errors, "name", name, min_len=1, max_len=CATEGORY_NAME_MAX, one_line=True)
    errors.no_nul("parentSlug", parent_slug)
    parent = parent_slug or None
    if parent is not None and parent == slug:
        errors.add("parentSlug", "must not be the category itself")
    errors.raise_if_any()
    return slug, name, parent


def validate_review(rating: int, title: str, body: str) -> tuple[int, str, str]:
    errors = FieldErrors()
    if not 1 <= rating <= 5:
        errors.add("rating", "must be between 1 and 5")
    title = check_text(errors, "title", title, min_len=0, max_len=REVIEW_TITLE_MAX)
    body = check_text(errors, "body", body, min_len=0, max_len=REVIEW_BODY_MAX)
    errors.raise_if_any()
    return rating, title, body
