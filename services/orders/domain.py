"""Rules of the orders service: totals, order numbers, statuses and transitions, address and
payment validation. Pure: no grpc, no database, no network. (The Idempotency-Key rule and the
request fingerprint are shop.lib.idempotency's.)"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shop.lib.addresses import clean_country, clean_phone, clean_postal_code
from shop.lib.errors import Conflict, ValidationError
from shop.lib.validation import FieldErrors

# -- statuses ----------------------------------------------------------------------------------

PENDING = "PENDING"
PAID = "PAID"
PAYMENT_FAILED = "PAYMENT_FAILED"
PROCESSING = "PROCESSING"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"
CANCELLED = "CANCELLED"
REFUNDED = "REFUNDED"
STATUSES = (PENDING, PAID, PAYMENT_FAILED, PROCESSING, SHIPPED, DELIVERED, CANCELLED, REFUNDED)

CANCELLABLE = frozenset({PENDING, PAID, PROCESSING})
# Statuses whose money was captured and may be refunded.
REFUNDABLE = frozenset({PAID, PROCESSING, SHIPPED, DELIVERED})
# Statuses in which the goods have not left: a cancel or full refund puts the stock back.
NOT_SHIPPED = frozenset({PENDING, PAID, PROCESSING})

# The fulfilment ladder an admin walks an order along.
NEXT_STATUS = {PAID: PROCESSING, PROCESSING: SHIPPED, SHIPPED: DELIVERED}

# -- the saga as data (internal; `orders.stage`, `outbox.kind`) ------------------------------


class Stage(StrEnum):
    """Where a checkout is. Each unfinished stage has one handler in `checkout.STAGE_HANDLERS`."""

    NEW = "new"  # recorded PENDING with its idempotency key; cart not taken yet (or unknown)
    PRICED = "priced"  # (orders recorded before the cart was taken in one call) lines snapshotted
    RESERVED = "reserved"  # cart taken, stock reserved (reservation id = order id); charge not known
    DONE = "done"  # a final outcome is recorded (PAID, PAYMENT_FAILED, CANCELLED); the outbox does the rest


UNFINISHED_STAGES = (Stage.NEW, Stage.PRICED, Stage.RESERVED)


class OutboxKind(StrEnum):
    """Side effects owed after a state change. Each has one handler in `outbox.HANDLERS`."""

    COMMIT_RESERVATION = "commit_reservation"  # the stock is sold (and the purchases recorded)
    RELEASE_RESERVATION = "release_reservation"  # the stock goes back (nothing was sold)
    RETURN_STOCK = "return_stock"  # cancel: restock a committed reservation, release a held one
    RESTORE_CART = "restore_cart"  # the checkout failed: the taken lines go back into the cart
    CLEAR_CART = "clear_cart"  # (rows written before the cart was taken at checkout)
    RECORD_PURCHASES = "record_purchases"  # (rows written before commit recorded them)
    REFUND = "refund"  # what remains captured
    EMAIL = "email"  # paid, shipped, cancelled (at-least-once)


# A reservation older than this is renewed (or re-taken) before the charge: a charge is only
# attempted while the stock is held. Well under the catalog's reservation TTL (900 s).
RENEW_RESERVATION_AFTER_SECONDS = 60

# -- money -------------------------------------------------------------------------------------

TAX_PERCENT = 8
SHIPPING_CENTS = 999
FREE_SHIPPING_FROM_CENTS = 10_000


@dataclass(frozen=True)
class Totals:
    subtotal_cents: int
    tax_cents: int
    shipping_cents: int
    total_cents: int


def tax_cents(subtotal_cents: int) -> int:
    """8 % of the subtotal, rounded half-up to the cent, in integer arithmetic."""
    return (subtotal_cents * TAX_PERCENT + 50) // 100


def shipping_cents(subtotal_cents: int) -> int:
    return 0 if subtotal_cents >= FREE_SHIPPING_FROM_CENTS else SHIPPING_CENTS


def compute_totals(lines: list[tuple[int, int]]) -> Totals:
    """Totals of (unit price, quantity) lines."""
    subtotal = sum(unit * quantity for unit, quantity in lines)
    tax = tax_cents(subtotal)
    shipping = shipping_cents(subtotal)
    return Totals(subtotal, tax, shipping, subtotal + tax + shipping)


# -- order numbers -----------------------------------------------------------------------------

# Uppercase letters and digits without the look-alikes 0/O, 1/I/L.
NUMBER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
NUMBER_SUFFIX_LENGTH = 6
NUMBER_PATTERN = re.compile(r"^ORD-\d{8}-[" + NUMBER_ALPHABET + r"]{6}$")


def order_number(now: datetime) -> str:
    suffix = "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(NUMBER_SUFFIX_LENGTH))
    return f"ORD-{now:%Y%m%d}-{suffix}"


# -- transitions -------------------------------------------------------------------------------

FULFILMENT_TARGETS = (PROCESSING, SHIPPED, DELIVERED)


def check_fulfilment_target(target: str) -> None:
    """UpdateOrderStatus asks for a fulfilment status only (checked before the order is read)."""
    if target not in FULFILMENT_TARGETS:
        raise ValidationError.single("status", "must be one of PROCESSING, SHIPPED, DELIVERED")


def check_transition(current: str, target: str, carrier: str, tracking_number: str) -> None:
    """Admin fulfilment: PAID→PROCESSING→SHIPPED→DELIVERED only; SHIPPED needs carrier and tracking."""
    if target not in STATUSES:
        raise ValidationError.single("status", "must be one of PROCESSING, SHIPPED, DELIVERED")
    errors = FieldErrors()
    if target == SHIPPED:
        if not carrier.strip():
            errors.add("carrier", "is required when the status is SHIPPED")
        if not tracking_number.strip():
            errors.add("trackingNumber", "is required when the status is SHIPPED")
        errors.raise_if_any()
    for name, value in (("carrier", carrier), ("trackingNumber", tracking_number)):
        if len(value) > 100:
            errors.add(name, "must be at most 100 characters")
    errors.raise_if_any()
    if NEXT_STATUS.get(current) != target:
        raise Conflict(
            f"An order cannot go from {current} to {target}.",
            code="INVALID_TRANSITION",
            details={"from": current, "to": target},
        )


def check_cancellable(current: str) -> None:
    if current not in CANCELLABLE:
        raise Conflict(
            f"An order in status {current} cannot be cancelled.",
            code="ORDER_NOT_CANCELLABLE",
            details={"status": current},
        )


# Retry-After of PAYMENT_IN_PROGRESS: about one recovery pass, which learns the charge's outcome.
PAYMENT_IN_PROGRESS_RETRY_SECONDS = 5


def check_pending_cancellable(stage: str, checkout_running: bool) -> None:
    """A PENDING order may be cancelled only while no charge can be under way. From the `reserved`
    stage on, a charge may have reached the provider (idempotency key = order id) even when its
    answer was lost: cancelling then could keep money the order says it never took. So it waits
    until the saga knows the outcome (PAID: a cancel refunds it; PAYMENT_FAILED: nothing taken)."""
    if stage == Stage.RESERVED:
        raise Conflict(
            "The payment of this order is still being processed; retry shortly.",
            code="PAYMENT_IN_PROGRESS",
            details={"status": PENDING},
            retry_after=PAYMENT_IN_PROGRESS_RETRY_SECONDS,
        )
    if checkout_running:
        raise Conflict(
            "The checkout of this order is still running; retry in a moment.",
            code="ORDER_NOT_CANCELLABLE",
            details={"status": PENDING},
        )


def check_refundable(current: str, remaining_cents: int, requested_cents: int) -> int:
    """The amount a refund takes (0 requested = what remains); 409 when it exceeds what remains."""
    if requested_cents < 0:
        raise ValidationError.single("amountCents", "must be positive (omit it to refund what remains)")
    if current not in REFUNDABLE or remaining_cents <= 0:
        raise Conflict(
            "Nothing captured remains to refund on this order.",
            code="REFUND_EXCEEDS_CAPTURED",
            details={"remainingCents": max(remaining_cents, 0), "requestedCents": requested_cents},
        )
    amount = requested_cents or remaining_cents
    if amount > remaining_cents:
        raise Conflict(
            "The refund exceeds what remains captured on this order.",
            code="REFUND_EXCEEDS_CAPTURED",
            details={"remainingCents": remaining_cents, "requestedCents": requested_cents},
        )
    return amount


MAX_REFUND_REASON = 500


def validate_refund(amount_cents: int, reason: str) -> str:
    """An admin's refund request: the amount (0 = what remains) and the reason, trimmed."""
    if amount_cents < 0:
        raise ValidationError.single("amountCents", "must be positive (omit it to refund what remains)")
    reason = (reason or "").strip()
    if len(reason) > MAX_REFUND_REASON:
        raise ValidationError.single("reason", f"must be at most {MAX_REFUND_REASON} characters")
    return reason


# -- addresses and payment ---------------------------------------------------------------------

ADDRESS_FIELDS = ("first_name", "last_name", "line1", "line2", "city", "state", "postal_code", "country", "phone")
REQUIRED_ADDRESS_FIELDS = ("first_name", "last_name", "line1", "city", "postal_code", "country")
_CAMEL = {
    "first_name": "firstName",
    "last_name": "lastName",
    "postal_code": "postalCode",
}
MAX_ADDRESS_FIELD = 200


def validate_address(
    address: dict[str, str], prefix: str = "shippingAddress", *, saved: bool = False
) -> dict[str, str]:
    """A normalised copy (trimmed, country upper-cased) or 400 with every bad field. The country
    and phone rules are shop.lib.addresses' (the phone a possible number for the country). A
    `saved` address (auth's address book) keeps its phone as auth accepted it when it was saved:
    a buyer is not refused at checkout for a number an older rule let in."""
    errors = FieldErrors(prefix=prefix)
    clean = {name: (address.get(name) or "").strip() for name in ADDRESS_FIELDS}
    for name in REQUIRED_ADDRESS_FIELDS:
        if not clean[name]:
            errors.add(_CAMEL.get(name, name), "is required")
    for name in ADDRESS_FIELDS:
        if name not in ("country", "phone", "postal_code") and len(clean[name]) > MAX_ADDRESS_FIELD:
            errors.set(_CAMEL.get(name, name), f"must be at most {MAX_ADDRESS_FIELD} characters")
    if clean["country"]:
        clean["country"] = clean_country(errors, "country", clean["country"])
    if clean["postal_code"] and not saved:
        clean["postal_code"] = clean_postal_code(errors, "postalCode", address.get("postal_code") or "")
    if not saved:
        clean["phone"] = clean_phone(errors, "phone", clean["phone"], clean["country"])
    errors.raise_if_any()
    return clean


PAYMENT_METHOD_CARD = "card"


def validate_payment(method: str, token: str) -> None:
    errors = FieldErrors(prefix="payment")
    if (method or "") != PAYMENT_METHOD_CARD:
        errors.add("method", "must be 'card'")
    if not (token or "").strip():
        errors.add("token", "is required")
    elif len(token) > 255:
        errors.add("token", "must be at most 255 characters")
    errors.raise_if_any()


# -- emails ------------------------------------------------------------------------------------


def paid_email(number: str, total_cents: int, currency: str, frontend_url: str, order_id: str) -> tuple[str, str]:
    return (
        f"Your order {number} is paid",
        f"Thank you! We received your payment of {format_money(total_cents, currency)} for order {number}.\n\n"
        f"Follow it at {frontend_url.rstrip('/')}/orders/{order_id}\n",
    )


def shipped_email(number: str, carrier: str, tracking: str, frontend_url: str, order_id: str) -> tuple[str, str]:
    return (
        f"Your order {number} has shipped",
        f"Order {number} is on its way with {carrier} (tracking number {tracking}).\n\n"
        f"Follow it at {frontend_url.rstrip('/')}/orders/{order_id}\n",
    )


def cancelled_email(number: str, reason: str, frontend_url: str, order_id: str) -> tuple[str, str]:
    because = f" Reason: {reason}." if reason else ""
    return (
        f"Your order {number} is cancelled",
        f"Order {number} was cancelled.{because} Anything you paid is refunded.\n\n"
        f"{frontend_url.rstrip('/')}/orders/{order_id}\n",
    )


def format_money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"
