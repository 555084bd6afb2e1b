"""Catalog rules: validation of products, categories, reviews, stock lines and reservations; who
may see and change a product; the reservation protocol's transitions (what each status allows).

Pure functions (no grpc, no fastapi, no I/O): the use cases (products.py, stock.py, reviews.py,
wishlist.py) read the rows, ask these rules, then write. Field names in errors are the camelCase
REST names.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from shop.lib.errors import Conflict, NotFound, PermissionDenied, ValidationError
from shop.lib.validation import FieldErrors

# -- statuses ----------------------------------------------------------------------------------

ACTIVE = "ACTIVE"
DRAFT = "DRAFT"
ARCHIVED = "ARCHIVED"
PRODUCT_STATUSES = (ACTIVE, DRAFT, ARCHIVED)

RESERVED = "RESERVED"
COMMITTED = "COMMITTED"
RELEASED = "RELEASED"
RESTOCKED = "RESTOCKED"

# -- limits ------------------------------------------------------------------------------------

SKU_MAX = 64
NAME_MAX = 200
DESCRIPTION_MAX = 5000
BRAND_MAX = 100
MAX_IMAGES = 10
URL_MAX = 2048
MAX_PRICE_CENTS = 100_000_000_00  # 100 million in major units
MAX_STOCK = 1_000_000
MAX_STOCK_DELTA = 1_000_000
REASON_MAX = 200
CATEGORY_SLUG_MAX = 64
CATEGORY_NAME_MAX = 100
REVIEW_TITLE_MAX = 120
REVIEW_BODY_MAX = 5000
MAX_BATCH_IDS = 200
MAX_RESERVATION_LINES = 200
MAX_LINE_QUANTITY = 10_000
RESERVATION_ID_MAX = 64
MAX_WISHLIST_ITEMS = 500
SEARCH_QUERY_MAX = 200

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")

SORTS = ("relevance", "newest", "price", "-price", "rating", "name")


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


# -- products ----------------------------------------------------------------------------------


def _check_text(
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


def valid_image_url(url: str) -> bool:
    if not url or len(url) > URL_MAX or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_images(errors: FieldErrors, images: list[str]) -> list[str]:
    if len(images) > MAX_IMAGES:
        errors.add("images", f"at most {MAX_IMAGES} images")
    for index, url in enumerate(images):
        if not valid_image_url(url):
            errors.add("images", f"item {index} must be an http(s) URL of at most {URL_MAX} characters")
    return list(images)


def _check_price(errors: FieldErrors, name: str, value: int) -> None:
    if value <= 0:
        errors.add(name, "must be greater than 0")
    elif value > MAX_PRICE_CENTS:
        errors.add(name, f"must be at most {MAX_PRICE_CENTS}")


def validate_product(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validates the given product fields (all of them when creating; the changed ones on update).
    Returns them normalised. Cross-field rules are checked by `check_prices`."""
    errors = FieldErrors()
    out: dict[str, Any] = {}
    for name, rest_name in (
        ("sku", "sku"),
        ("currency", "currency"),
        ("category_slug", "categorySlug"),
        ("brand", "brand"),
    ):
        errors.no_nul(rest_name, fields.get(name))
    if "sku" in fields:
        sku = fields["sku"].strip()
        if not sku:
            errors.add("sku", "must not be empty")
        elif len(sku) > SKU_MAX:
            errors.add("sku", f"must be at most {SKU_MAX} characters")
        elif not SKU_PATTERN.match(sku):
            errors.add("sku", "may contain only letters, digits, '.', '_' and '-'")
        out["sku"] = sku
    if "name" in fields:
        out["name"] = _check_text(errors, "name", fields["name"], min_len=1, max_len=NAME_MAX)
    if "description" in fields:
        out["description"] = _check_text(
            errors, "description", fields["description"], min_len=0, max_len=DESCRIPTION_MAX
        )
    if "price_cents" in fields:
        _check_price(errors, "priceCents", fields["price_cents"])
        out["price_cents"] = fields["price_cents"]
    if "compare_at_price_cents" in fields:
        value = fields["compare_at_price_cents"]
        if value is not None:
            _check_price(errors, "compareAtPriceCents", value)
        out["compare_at_price_cents"] = value
    if "currency" in fields:
        currency = fields["currency"]
        if not CURRENCY_PATTERN.fullmatch(currency):
            errors.add("currency", "must be a 3-letter upper-case ISO 4217 code")
        out["currency"] = currency
    if "category_slug" in fields:
        slug = fields["category_slug"].strip()
        if not slug:
            errors.add("categorySlug", "must not be empty")
        out["category_slug"] = slug
    if "brand" in fields:
        brand = (fields["brand"] or "").strip()
        if len(brand) > BRAND_MAX:
            errors.add("brand", f"must be at most {BRAND_MAX} characters")
        out["brand"] = brand or None
    if "images" in fields:
        out["images"] = _check_images(errors, fields["images"])
    if "stock" in fields:
        stock = fields["stock"]
        if stock < 0:
            errors.add("stock", "must be at least 0")
        elif stock > MAX_STOCK:
            errors.add("stock", f"must be at most {MAX_STOCK}")
        out["stock"] = stock
    if "status" in fields:
        status = fields["status"] or (ACTIVE if creating else None)
        if status not in (ACTIVE, DRAFT):
            errors.add("status", "must be ACTIVE or DRAFT (DELETE archives a product)")
        out["status"] = status
    if creating:
        for required, rest_name in (
            ("sku", "sku"),
            ("name", "name"),
            ("price_cents", "priceCents"),
            ("currency", "currency"),
            ("category_slug", "categorySlug"),
        ):
            if required not in fields:
                errors.add(rest_name, "is required")
    errors.raise_if_any()
    return out


def check_prices(price_cents: int, compare_at_price_cents: int | None) -> None:
    if compare_at_price_cents is not None and compare_at_price_cents <= price_cents:
        raise ValidationError.single("compareAtPriceCents", "must be greater than priceCents")


def search_text(brand: str | None, category_words: list[str]) -> str:
    """The extra words a product is found by besides its name and description."""
    words = [brand or "", *category_words]
    return " ".join(word.replace("-", " ") for word in words if word)


def can_see(product_status: str, product_seller: str | None, user_id: str | None, role: str | None) -> bool:
    """ACTIVE: everybody. DRAFT: admins and the owning seller. ARCHIVED: nobody (404)."""
    if product_status == ACTIVE:
        return True
    if product_status == DRAFT:
        return role == "ADMIN" or (user_id is not None and product_seller == user_id)
    return False


def can_manage(product_seller: str | None, user_id: str | None, role: str | None) -> bool:
    return role == "ADMIN" or (role == "SELLER" and user_id is not None and product_seller == user_id)


def product_not_found() -> NotFound:
    return NotFound("Product not found.", code="PRODUCT_NOT_FOUND")


class _ProductRow(Protocol):  # what the checks read of a product (ORM model or lean row)
    @property
    def status(self) -> str: ...
    @property
    def seller_id(self) -> str | None: ...


_Product = TypeVar("_Product", bound=_ProductRow)


def check_visible(product: _Product | None, user_id: str | None, role: str | None) -> _Product:
    """A product the caller may not see does not exist for it (404, never 403). Returns it."""
    if product is None or not can_see(product.status, product.seller_id, user_id, role):
        raise product_not_found()
    return product


def check_manageable(product: _Product | None, user_id: str | None, role: str | None) -> _Product:
    """Changing a product: 404 if the caller cannot see it, 403 if it sees it but does not own it.
    Returns it."""
    visible = check_visible(product, user_id, role)
    if not can_manage(visible.seller_id, user_id, role):
        raise PermissionDenied("Only an admin or the seller who owns this product may change it.")
    return visible


def check_version(current: datetime, expected: datetime | None) -> None:
    """An update made against a version the client read (REST If-Match): refused, changing
    nothing, when the product changed since (412 PRECONDITION_FAILED at the gateway)."""
    if expected is not None and current != expected:
        raise Conflict("The product changed since it was read; read it again and retry.", code="PRECONDITION_FAILED")


def already_archived(product: Any | None, user_id: str | None, role: str | None) -> bool:
    """Archiving twice is fine for whoever could archive it (True: nothing to do); anyone else
    gets what `check_manageable` says."""
    if product is None:
        raise product_not_found()
    if product.status == ARCHIVED and can_manage(product.seller_id, user_id, role):
        return True
    check_manageable(product, user_id, role)
    return False


def category_words(categories: dict[str, Any], slug: str) -> list[str]:
    """The slugs and names of a category and its ancestors (rows with slug, name, parent_slug)."""
    words, seen, current = [], set(), categories.get(slug)
    while current is not None and current.slug not in seen:
        seen.add(current.slug)
        words += [current.slug, current.name]
        current = categories.get(current.parent_slug) if current.parent_slug else None
    return words


def owner_of_new_product(user_id: str | None, role: str | None) -> str | None:
    """A seller owns what it creates; admin-created products belong to the shop (no seller)."""
    return user_id if role == "SELLER" else None


def validate_stock_adjustment(delta: int, reason: str) -> str:
    errors = FieldErrors()
    if delta == 0:
        errors.add("delta", "must not be 0")
    elif abs(delta) > MAX_STOCK_DELTA:
        errors.add("delta", f"must be between -{MAX_STOCK_DELTA} and {MAX_STOCK_DELTA}")
    reason = _check_text(errors, "reason", reason, min_len=1, max_len=REASON_MAX, one_line=True)
    errors.raise_if_any()
    return reason


def check_adjustment(product_id: str, stock: int, delta: int) -> None:
    """A manual adjustment never takes stock below 0."""
    if stock + delta < 0:
        raise Conflict(
            f"Only {stock} in stock; cannot remove {-delta}.",
            code="INSUFFICIENT_STOCK",
            details={"productIds": [product_id], "stock": stock},
        )


# -- categories --------------------------------------------------------------------------------


def validate_category(slug: str, name: str, parent_slug: str) -> tuple[str, str, str | None]:
    """A slug is taken as sent (no trimming: an identifier, as documented); the name is trimmed."""
    errors = FieldErrors()
    if not slug:
        errors.add("slug", "must not be empty")
    elif len(slug) > CATEGORY_SLUG_MAX:
        errors.add("slug", f"must be at most {CATEGORY_SLUG_MAX} characters")
    elif not SLUG_PATTERN.fullmatch(slug):
        errors.add("slug", "must be lower-case letters and digits separated by single hyphens")
    name = _check_text(errors, "name", name, min_len=1, max_len=CATEGORY_NAME_MAX, one_line=True)
    errors.no_nul("parentSlug", parent_slug)
    parent = parent_slug or None
    if parent is not None and parent == slug:
        errors.add("parentSlug", "must not be the category itself")
    errors.raise_if_any()
    return slug, name, parent


def descendants(slug: str, parents: dict[str, str | None]) -> set[str]:
    """`slug` and every category below it (parents maps slug → parent slug)."""
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found, stack = set(), [slug]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(children.get(current, []))
    return found


def rolled_up_counts(direct: dict[str, int], parents: dict[str, str | None]) -> dict[str, int]:
    """Product counts per category including every subcategory."""
    return {slug: sum(direct.get(s, 0) for s in descendants(slug, parents)) for slug in parents}


# -- reviews -----------------------------------------------------------------------------------


def validate_review(rating: int, title: str, body: str) -> tuple[int, str, str]:
    errors = FieldErrors()
    if not 1 <= rating <= 5:
        errors.add("rating", "must be between 1 and 5")
    title = _check_text(errors, "title", title, min_len=0, max_len=REVIEW_TITLE_MAX)
    body = _check_text(errors, "body", body, min_len=0, max_len=REVIEW_BODY_MAX)
    errors.raise_if_any()
    return rating, title, body


# -- wishlist ----------------------------------------------------------------------------------


def check_wishlist_room(count: int) -> None:
    if count >= MAX_WISHLIST_ITEMS:
        raise Conflict(f"A wishlist holds at most {MAX_WISHLIST_ITEMS} products.", code="WISHLIST_FULL")


# -- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductQuery:
    query: str
    category_slug: str
    brand: str
    min_price_cents: int | None
    max_price_cents: int | None
    in_stock_only: bool
    sort: str

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "q": self.query,
            "category": self.category_slug,
            "brand": self.brand.lower(),
            "min": self.min_price_cents,
            "max": self.max_price_cents,
            "inStock": self.in_stock_only,
            "sort": self.sort,
        }


def search_words(query: str) -> list[str]:
    return [word for word in re.split(r"\s+", query.strip().lower()) if word]


def product_query(
    *,
    query: str,
    category_slug: str,
    brand: str,
    min_price_cents: int | None,
    max_price_cents: int | None,
    in_stock_only: bool,
    sort: str | None,
) -> ProductQuery:
    errors = FieldErrors()
    query = " ".join(query.split())
    if len(query) > SEARCH_QUERY_MAX:
        errors.add("q", f"must be at most {SEARCH_QUERY_MAX} characters")
    for name, value in (("minPriceCents", min_price_cents), ("maxPriceCents", max_price_cents)):
        if value is not None and value < 0:
            errors.add(name, "must be at least 0")
    if min_price_cents is not None and max_price_cents is not None and min_price_cents > max_price_cents:
        errors.add("maxPriceCents", "must be at least minPriceCents")
    if not sort:
        sort = "relevance" if query else "newest"
    if sort not in SORTS:
        errors.add("sort", f"must be one of {', '.join(SORTS)}")
    elif sort == "relevance" and not query:
        # Without words to rank by, relevance is the default order: newest first.
        sort = "newest"
    errors.no_nul("q", query)
    errors.no_nul("category", category_slug)
    errors.no_nul("brand", brand)
    errors.raise_if_any()
    return ProductQuery(
        query, category_slug.strip(), brand.strip(), min_price_cents, max_price_cents, in_stock_only, sort
    )


# -- reservations ------------------------------------------------------------------------------


def validate_reservation_id(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValidationError.single("reservationId", "is required")
    if len(value) > RESERVATION_ID_MAX or "\x00" in value:
        raise ValidationError.single("reservationId", f"must be at most {RESERVATION_ID_MAX} characters, no NUL")
    return value


def validate_order_id(value: str) -> str:
    """RecordPurchases' order id: the same limits as a reservation id."""
    value = value.strip()
    if not value or len(value) > RESERVATION_ID_MAX or "\x00" in value:
        raise ValidationError.single("orderId", f"is required, at most {RESERVATION_ID_MAX} characters")
    return value


def merge_lines(lines: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Validates stock lines, merges duplicate products and sorts by product id (the lock order
    every writer follows, so concurrent reservations never deadlock)."""
    errors = FieldErrors()
    if not lines:
        errors.add("lines", "at least one line is required")
    if len(lines) > MAX_RESERVATION_LINES:
        errors.add("lines", f"at most {MAX_RESERVATION_LINES} lines")
    merged: dict[str, int] = {}
    for index, (product_id, quantity) in enumerate(lines):
        if not is_uuid(product_id):
            errors.add(f"lines[{index}].productId", "must be a UUID")
            continue
        if not 1 <= quantity <= MAX_LINE_QUANTITY:
            errors.add(f"lines[{index}].quantity", f"must be between 1 and {MAX_LINE_QUANTITY}")
            continue
        key = product_id.lower()
        merged[key] = merged.get(key, 0) + quantity
    for product_id, quantity in merged.items():
        if quantity > MAX_LINE_QUANTITY:
            errors.add("lines", f"total quantity of {product_id} must be at most {MAX_LINE_QUANTITY}")
    errors.raise_if_any()
    return sorted(merged.items())


# -- the reservation protocol: what each status allows (stock.py runs it in one transaction) ----


def reservation_not_found() -> NotFound:
    return NotFound("Reservation not found.", code="RESERVATION_NOT_FOUND")


def check_same_lines(stored: list[tuple[str, int]], requested: list[tuple[str, int]]) -> None:
    """A repeated ReserveStock must name the same (merged, sorted) lines."""
    if stored != requested:
        raise Conflict("This reservation id was already used with other lines.", code="RESERVATION_MISMATCH")


def shortfall(lines: list[tuple[str, int]], found: dict[str, Any]) -> Conflict:
    """Why `lines` (from the first one that could not be taken) could not be taken; `found` has the
    rows (stock, status) of those products that exist. Unknown or non-ACTIVE products:
    PRODUCT_UNAVAILABLE (those); else INSUFFICIENT_STOCK (the short ones). The first line is short
    even if its stock came back since (a concurrent release)."""
    unavailable = [p for p, _ in lines if p not in found or found[p].status != ACTIVE]
    if unavailable:
        return Conflict(
            "Some products are not available any more.", code="PRODUCT_UNAVAILABLE", details={"productIds": unavailable}
        )
    short = [lines[0][0]] + [p for p, q in lines[1:] if found[p].stock < q]
    return Conflict("Not enough stock for some products.", code="INSUFFICIENT_STOCK", details={"productIds": short})


def released_stock_gone(cause: Conflict) -> Conflict:
    """Committing a RELEASED reservation whose stock cannot be taken again."""
    return Conflict(
        "The reservation was released (expired or cancelled) and its stock is gone.",
        code="RESERVATION_RELEASED",
        details=cause.details,
    )


@dataclass(frozen=True)
class Step:
    """What a reservation call does: take the lines' stock again (`retake`), give it back
    (`give_back`), and the status to write (`to`; None: the status stays)."""

    retake: bool = False
    give_back: bool = False
    to: str | None = None


# The steps there are (built once: the stock calls are hot).
NOTHING = Step()
RENEW = Step(to=RESERVED)
RETAKE_AND_RENEW = Step(retake=True, to=RESERVED)
COMMIT = Step(to=COMMITTED)
RETAKE_AND_COMMIT = Step(retake=True, to=COMMITTED)
RELEASE = Step(give_back=True, to=RELEASED)
RESTOCK = Step(give_back=True, to=RESTOCKED)


def renew_step(status: str, renew: bool) -> Step:
    """A repeated ReserveStock: without `renew` nothing changes; with it RESERVED gets a new
    expiry, RELEASED is re-taken (all or none) and RESERVED again, COMMITTED/RESTOCKED stay."""
    if renew and status in (RESERVED, RELEASED):
        return RETAKE_AND_RENEW if status == RELEASED else RENEW
    return NOTHING


def commit_step(status: str) -> Step:
    """RESERVED -> COMMITTED; RELEASED (expired before the paid order got here) is re-taken and
    COMMITTED; COMMITTED (a repeat) or RESTOCKED (committed earlier) stay."""
    if status in (RESERVED, RELEASED):
        return RETAKE_AND_COMMIT if status == RELEASED else COMMIT
    return NOTHING


def release_step(status: str, expires_at: datetime, *, expired_before: datetime | None = None) -> Step | None:
    """RESERVED -> RELEASED (stock back); RELEASED stays; COMMITTED/RESTOCKED: RESERVATION_COMMITTED.
    The sweep (`expired_before`) skips (None) what is committed or not expired after all."""
    if status in (COMMITTED, RESTOCKED):
        if expired_before is not None:
            return None
        raise Conflict(
            "The reservation is committed; use RestockReservation to put its stock back.", code="RESERVATION_COMMITTED"
        )
    if status == RESERVED:
        if expired_before is not None and expires_at >= expired_before:
            return None
        return RELEASE
    return NOTHING


def restock_step(status: str) -> Step:
    """COMMITTED -> RESTOCKED (stock back); RESTOCKED stays; RESERVED and RELEASED refuse."""
    if status == RESERVED:
        raise Conflict("The reservation is not committed; release it instead.", code="RESERVATION_NOT_COMMITTED")
    if status == RELEASED:
        raise Conflict("The reservation was released; its stock is already back.", code="RESERVATION_RELEASED")
    if status == COMMITTED:
        return RESTOCK
    return NOTHING
