"""The cart's rules, pure: who owns which cart, what a line may hold, how a cart is priced,
how a guest cart merges into a user's, when a guest cart expires. No grpc, no I/O."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from shop.lib.context import Caller
from shop.lib.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationError,
)
from shop.lib.idempotency import key_reused

MAX_LINE_QUANTITY = 100
# Distinct products one cart may hold (a cart is priced with one BatchGetProducts call).
MAX_CART_LINES = 100
# Namespace of the cart ids derived from their owner (uuid5): a cart has one stable id whether or
# not it has been written yet, and "get or create" is a single INSERT ... ON CONFLICT (id).
CART_ID_NAMESPACE = uuid.UUID("5d0f8f0e-3c4b-4f51-9a53-6b1f0c2a7e11")


# -- ids ------------------------------------------------------------------------------------------


def parse_uuid(value: str, field_name: str) -> str:
    """A UUID in its canonical lower-case form, or 400 VALIDATION_ERROR naming the field."""
    if not value:
        raise ValidationError.single(field_name, "is required")
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise ValidationError.single(field_name, "must be a UUID") from None
    if len(value) != 36:  # refuse braces, urn: prefixes and hex without dashes: one spelling only
        raise ValidationError.single(field_name, "must be a UUID")
    return str(parsed)


# -- owners ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Exactly one of a user id or a guest session id."""

    user_id: str | None = None
    session_id: str | None = None

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    @cached_property  # uuid5 hashes; a request asks for it several times
    def cart_id(self) -> str:
        key = f"user:{self.user_id}" if self.user_id is not None else f"session:{self.session_id}"
        return str(uuid.uuid5(CART_ID_NAMESPACE, key))


def resolve_owner(caller: Caller, user_id: str, session_id: str, user_owner_services: set[str]) -> Owner:
    """Which cart a request is about (see cart.proto):

    - a user token → that user's cart (naming another user is 403; a session id is not allowed);
    - a service identity with `user_id` → that user's cart, only for services allowed to act for
      any user (`user_owner_services`, the orders service at checkout); other services get 403;
    - a service identity with `session_id` → that guest cart;
    - nobody → 401.
    """
    if caller.is_user:
        if user_id and user_id.lower() != (caller.user_id or "").lower():
            raise PermissionDenied("A user may only reach their own cart.")
        if session_id:
            raise InvalidArgument(
                "A user's token selects the user's cart; owner.sessionId is not allowed with it.",
                fields={"owner.sessionId": ["is not allowed with a user token"]},
            )
        return Owner(user_id=caller.user_id)
    if not caller.is_service:
        raise Unauthenticated("Authentication required.")
    if user_id and session_id:
        raise ValidationError.single("owner", "name either a userId or a sessionId, not both")
    if user_id:
        if caller.service not in user_owner_services:
            raise PermissionDenied("This service may not act on a user's cart.")
        return Owner(user_id=parse_uuid(user_id, "owner.userId"))
    if session_id:
        return Owner(session_id=parse_uuid(session_id, "owner.sessionId"))
    raise ValidationError.single("owner", "is required: a userId or a sessionId")


# -- idempotency keys (the key rule and the replay check are shop.lib.idempotency's) ----------------


def add_fingerprint(product_id: str, quantity: int) -> str:
    """What an AddCartItem asked for: a repeated key must ask for the same. (The formula predates
    the kit's message fingerprint; fingerprints already stored keep matching.)"""
    return hashlib.sha256(f"add|{product_id}|{quantity}".encode()).hexdigest()


def request_cutoff(now: datetime, ttl_hours: int) -> datetime:
    """Idempotency keys recorded before this instant are forgotten."""
    return now - timedelta(hours=ttl_hours)


# -- checkouts (CheckoutCart / RestoreCart) -------------------------------------------------------

MAX_CHECKOUT_ID_LENGTH = 64
TAKEN = "taken"
RESTORED = "restored"


def validate_checkout_id(value: str) -> str:
    """A checkout's id (its idempotency key): 1..64 printable characters."""
    if not value:
        raise ValidationError.single("checkoutId", "is required")
    if len(value) > MAX_CHECKOUT_ID_LENGTH or not value.isprintable():
        raise ValidationError.single("checkoutId", f"must be 1..{MAX_CHECKOUT_ID_LENGTH} printable characters")
    return value


def check_same_checkout_owner(recorded_cart_id: str | None, cart_id: str) -> None:
    """A repeated checkout id must name the same cart (an id RestoreCart recorded without an owner
    matches any: it took nothing)."""
    if recorded_cart_id is not None and recorded_cart_id != cart_id:
        raise key_reused("This checkout id was used for another cart.")


def restored_lines(existing: Mapping[str, int], taken: Iterable[Line], max_lines: int = MAX_CART_LINES) -> list[Line]:
    """The lines to set when a checkout's `taken` lines go back into a cart that now holds
    `existing` ({product: quantity}): quantities added and capped at 100 per line; a line for a
    product the cart lacks needs room under `max_lines`, else it is dropped. No stock check: the
    lines were in the cart moments ago, and pricing shows any shortage as unavailable."""
    result: list[Line] = []
    line_count = len(existing)
    for line in taken:
        current = existing.get(line.product_id, 0)
        target = min(current + line.quantity, MAX_LINE_QUANTITY)
        if target <= current:
            continue
        if not current:
            if line_count >= max_lines:
                continue
            line_count += 1
        result.append(Line(product_id=line.product_id, quantity=target))
    return result


def checkout_cutoff(now: datetime, ttl_days: int) -> datetime:
    """Checkout records created before this instant are purged."""
    return now - timedelta(days=ttl_days)


# -- quantities -----------------------------------------------------------------------------------


def validate_add_quantity(quantity: int) -> int:
    if quantity < 1 or quantity > MAX_LINE_QUANTITY:
        raise ValidationError.single("quantity", f"must be an integer between 1 and {MAX_LINE_QUANTITY}")
    return quantity


def validate_set_quantity(quantity: int) -> int:
    if quantity < 0 or quantity > MAX_LINE_QUANTITY:
        raise ValidationError.single(
            "quantity", f"must be an integer between 0 and {MAX_LINE_QUANTITY} (0 removes the line)"
        )
    return quantity


# -- products as the cart sees them ---------------------------------------------------------------


@dataclass(frozen=True)
class ProductInfo:
    """What the catalog says about a product right now (never stored by the cart)."""

    id: str
    sku: str
    name: str
    price_cents: int
    currency: str
    stock: int
    active: bool


def is_sellable(product: ProductInfo | None, currency: str) -> bool:
    return product is not None and product.active and product.currency.upper() == currency.upper()


def line_cap(product: ProductInfo) -> int:
    """The most one line of this product may hold now."""
    return max(0, min(product.stock, MAX_LINE_QUANTITY))


def product_not_found(product_id: str) -> NotFound:
    return NotFound("Product not found.", code="PRODUCT_NOT_FOUND", details={"productId": product_id})


def insufficient_stock(product: ProductInfo) -> Conflict:
    return Conflict(
        f"Only {max(product.stock, 0)} of this product are in stock.",
        code="INSUFFICIENT_STOCK",
        details={"productIds": [product.id], "stock": max(product.stock, 0)},
    )


def too_many(existing: int) -> ValidationError:
    return ValidationError.single(
        "quantity", f"a cart line holds at most {MAX_LINE_QUANTITY}; this line already has {existing}"
    )


def check_can_hold(product: ProductInfo | None, product_id: str, quantity: int, currency: str) -> ProductInfo:
    """A line of `quantity` of this product is allowed now: it is sold (else 404 PRODUCT_NOT_FOUND),
    in the cart's currency (else 409 CURRENCY_MISMATCH) and in stock (else 409 INSUFFICIENT_STOCK)."""
    if product is None or not product.active:
        raise product_not_found(product_id)
    if product.currency.upper() != currency.upper():
        raise Conflict(
            f"This cart is priced in {currency}; the product is priced in {product.currency}.",
            code="CURRENCY_MISMATCH",
            details={"productIds": [product_id]},
        )
    if quantity > MAX_LINE_QUANTITY:
        raise too_many(quantity)
    if quantity > product.stock:
        raise insufficient_stock(product)
    return product


def check_room_for_new_line(line_count: int, max_lines: int = MAX_CART_LINES) -> None:
    """A cart holds at most `max_lines` distinct products (409 CART_FULL)."""
    if line_count >= max_lines:
        raise Conflict(f"A cart holds at most {max_lines} different products.", code="CART_FULL")


def add_refusal(existing: int, added: int, product: ProductInfo) -> ValidationError | Conflict:
    """Why adding `added` to a line holding `existing` was refused by the atomic capped increment."""
    if existing + added > MAX_LINE_QUANTITY:
        return too_many(existing)
    return insufficient_stock(product)


# -- pricing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    product_id: str
    sku: str
    name: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int
    available: bool


@dataclass(frozen=True)
class PricedCart:
    id: str
    items: list[PricedLine]
    item_count: int
    subtotal_cents: int
    currency: str


def price_cart(cart_id: str, lines: Iterable[Line], products: Mapping[str, ProductInfo], currency: str) -> PricedCart:
    """Prices the lines with the catalog's current data.

    A line is `available` when the catalog sells the product now (ACTIVE, in the cart's currency)
    and has at least the line's quantity in stock. Every line shows its current unit price and
    line total (0 when the catalog no longer knows the product), but only available lines count
    in `item_count` and `subtotal_cents`: the subtotal is what checkout could charge now.
    """
    items: list[PricedLine] = []
    for line in lines:
        product = products.get(line.product_id)
        unit = product.price_cents if product is not None else 0
        available = is_sellable(product, currency) and product is not None and product.stock >= line.quantity
        items.append(
            PricedLine(
                product_id=line.product_id,
                sku=product.sku if product is not None else "",
                name=product.name if product is not None else "",
                unit_price_cents=unit,
                quantity=line.quantity,
                line_total_cents=unit * line.quantity,
                available=available,
            )
        )
    return PricedCart(
        id=cart_id,
        items=items,
        item_count=sum(item.quantity for item in items if item.available),
        subtotal_cents=sum(item.line_total_cents for item in items if item.available),
        currency=currency.upper(),
    )


# -- merging a guest cart into a user's -----------------------------------------------------------


def merged_quantity(existing: int, guest: int, product: ProductInfo | None, currency: str) -> int | None:
    """The user's line after adding a guest line to it: quantities added, capped by stock and
    100. The user's own quantity is never lowered by a merge. None when the guest line is dropped
    (the product is no longer sold or has no stock) and the user has no line of it."""
    if not is_sellable(product, currency):
        return existing or None
    assert product is not None
    target = max(existing, min(existing + guest, line_cap(product)))
    return target or None


# -- expiry ---------------------------------------------------------------------------------------


def guest_cart_cutoff(now: datetime, ttl_days: int) -> datetime:
    """Guest carts last changed before this instant have expired."""
    return now - timedelta(days=ttl_days)
