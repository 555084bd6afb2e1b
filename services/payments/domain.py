"""Rules of the payments service: validation, refund arithmetic, status ranks, webhook signatures,
and how a provider event changes a payment. Pure: no grpc, no database, no network."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from shop.lib.errors import Conflict, InvalidArgument
from shop.lib.idempotency import KEY_MESSAGE, is_valid_key
from shop.lib.validation import FieldErrors

# Payment statuses (stored as text; the proto enum is PAYMENT_STATUS_<name>).
PENDING = "PENDING"
DECLINED = "DECLINED"
SUCCEEDED = "SUCCEEDED"
PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
REFUNDED = "REFUNDED"

# A payment only moves up this ladder: an event that would move it down (an old event delivered
# late, a failure after a success) changes nothing.
STATUS_RANK = {PENDING: 0, DECLINED: 1, SUCCEEDED: 2, PARTIALLY_REFUNDED: 3, REFUNDED: 4}
REFUNDABLE = (SUCCEEDED, PARTIALLY_REFUNDED, REFUNDED)

# Refund statuses: PENDING from the reservation until the provider answers, then SUCCEEDED, or
# FAILED when the provider refused it (the reservation is released).
REFUND_PENDING = "PENDING"
REFUND_SUCCEEDED = "SUCCEEDED"
REFUND_FAILED = "FAILED"

METHOD_CARD = "card"
MAX_AMOUNT_CENTS = 99_999_999  # Stripe's limit for most currencies ($999,999.99)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_REASON_LENGTH = 500

SIGNATURE_SCHEME = "v1"


@dataclass(frozen=True)
class ChargeRequest:
    order_id: str
    user_id: str
    amount_cents: int
    currency_code: str
    method: str
    token: str


def validate_charge(
    order_id: str, user_id: str, amount_cents: int, currency_code: str, method: str, token: str
) -> ChargeRequest:
    errors = FieldErrors()
    if not _ID.match(order_id or ""):
        errors.add("orderId", "is required (an id of at most 64 characters)")
    if amount_cents <= 0 or amount_cents > MAX_AMOUNT_CENTS:
        errors.add("amountCents", f"must be between 1 and {MAX_AMOUNT_CENTS}")
    currency = (currency_code or "").upper()
    if not _CURRENCY.match(currency):
        errors.add("currencyCode", "must be a 3-letter ISO 4217 code")
    method = _check_method(errors, method, token)
    errors.raise_if_any()
    return ChargeRequest(order_id, user_id or "", amount_cents, currency, method, token)


def _check_method(errors: FieldErrors, method: str, token: str) -> str:
    method = (method or METHOD_CARD).lower()
    if method != METHOD_CARD:
        errors.add("payment.method", "must be 'card'")
    if not token or len(token) > 255:
        errors.add("payment.token", "is required")
    return method


def validate_payment_method(method: str, token: str) -> None:
    """The method and token fields of a charge, checked on their own (CheckPaymentMethod)."""
    errors = FieldErrors()
    _check_method(errors, method, token)
    errors.raise_if_any()


def validate_refund(order_id: str, amount_cents: int, reason: str, request_id: str) -> None:
    errors = FieldErrors()
    if not _ID.match(order_id or ""):
        errors.add("orderId", "is required")
    if amount_cents < 0:
        errors.add("amountCents", "must not be negative (0 refunds what remains)")
    if len(reason or "") > MAX_REASON_LENGTH:
        errors.add("reason", f"must be at most {MAX_REASON_LENGTH} characters")
    if not is_valid_key(request_id or ""):
        errors.add("requestId", KEY_MESSAGE)
    errors.raise_if_any()


def charge_matches(stored_amount: int, stored_currency: str, request: ChargeRequest) -> bool:
    return stored_amount == request.amount_cents and stored_currency == request.currency_code


def refund_amount(captured_cents: int, refunded_cents: int, requested_cents: int) -> int:
    """What a refund takes: the requested amount, or what remains when 0 is requested.
    More than remains (or nothing left) is 409 REFUND_EXCEEDS_CAPTURED."""
    remaining = captured_cents - refunded_cents
    amount = requested_cents or remaining
    if amount <= 0 or amount > remaining:
        raise Conflict(
            "The refund exceeds what remains captured on this order.",
            code="REFUND_EXCEEDS_CAPTURED",
            details={"remainingCents": max(remaining, 0), "requestedCents": requested_cents},
        )
    return amount


def status_for_amounts(current: str, captured_cents: int, refunded_cents: int) -> str:
    """The status the amounts imply, never below the current one."""
    if captured_cents <= 0:
        return current
    if refunded_cents >= captured_cents:
        implied = REFUNDED
    elif refunded_cents > 0:
        implied = PARTIALLY_REFUNDED
    else:
        implied = SUCCEEDED
    return higher(current, implied)


def apply_charge(
    state: PaymentState, *, succeeded: bool, pending: bool, captured_cents: int, decline_code: str
) -> PaymentState:
    """The payment after the provider's answer to CreateCharge, recorded after the call: like an
    event, it only moves the status up (a webhook that got there first is kept), a decline only
    ends a PENDING payment, and the captured amount only grows (capped by the amount)."""
    status, captured, decline = state.status, state.captured_cents, state.decline_code
    if succeeded:
        captured = max(captured, min(captured_cents, state.amount_cents))
        status = higher(status, SUCCEEDED)
    elif not pending and status == PENDING:
        status, decline = DECLINED, decline_code or "card_declined"
    status = status_for_amounts(status, captured, state.refunded_cents)
    return PaymentState(status, state.amount_cents, captured, state.refunded_cents, decline)


def higher(current: str, candidate: str) -> str:
    return candidate if STATUS_RANK[candidate] > STATUS_RANK[current] else current


# -- webhook signatures (Stripe's scheme, also used by the sandbox provider) ---------------------


class InvalidSignature(InvalidArgument):
    default_code = "INVALID_SIGNATURE"

    def __init__(self, message: str = "The webhook signature is not valid.") -> None:
        super().__init__(message)


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">` (what a provider sends)."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={compute_signature(payload, secret, timestamp)}"


def verify_signature(payload: bytes, header: str, secret: str, *, now: float, tolerance: int) -> int:
    """Checks a `t=..,v1=..` header: any v1 signature must match (constant-time), and the
    timestamp must be within `tolerance` seconds of `now`. Returns the timestamp."""
    if not header or not secret:
        raise InvalidSignature()
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature() from None
        elif key == SIGNATURE_SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature()
    expected = compute_signature(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures):
        raise InvalidSignature()
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("The webhook signature's timestamp is outside the tolerance.")
    return timestamp


# -- provider events -------------------------------------------------------------------------

EVENT_SUCCEEDED = "payment_intent.succeeded"
EVENT_FAILED = "payment_intent.payment_failed"
EVENT_REFUNDED = "charge.refunded"
HANDLED_EVENTS = (EVENT_SUCCEEDED, EVENT_FAILED, EVENT_REFUNDED)


@dataclass(frozen=True)
class ProviderEvent:
    """A verified provider event in Stripe's shape: {id, type, created, data: {object: {...}}}."""

    id: str
    type: str
    created: int
    object: dict[str, Any]

    @property
    def payment_reference(self) -> str:
        """The provider's payment (intent) id the event is about."""
        obj = self.object
        if self.type.startswith("payment_intent."):
            return str(obj.get("id") or "")
        intent = obj.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        return str(intent or "")

    @property
    def order_id(self) -> str:
        metadata = self.object.get("metadata") or {}
        return str(metadata.get("order_id") or "") if isinstance(metadata, dict) else ""


def parse_event(body: dict[str, Any]) -> ProviderEvent:
    try:
        event_id = body["id"]
        event_type = body["type"]
        created = int(body.get("created") or 0)
        obj = body["data"]["object"]
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument("The webhook event is malformed.", code="INVALID_EVENT") from None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not isinstance(obj, dict):
        raise InvalidArgument("The webhook event is malformed.", code="INVALID_EVENT")
    return ProviderEvent(event_id, event_type, created, obj)


@dataclass(frozen=True)
class PaymentState:
    status: str
    amount_cents: int
    captured_cents: int
    refunded_cents: int
    decline_code: str

    @classmethod
    def of(cls, payment: Any) -> PaymentState:
        """What the rules read of a payment row (ORM object or lean row)."""
        return cls(
            payment.status, payment.amount_cents, payment.captured_cents, payment.refunded_cents, payment.decline_code
        )


def _int(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def apply_event(state: PaymentState, event: ProviderEvent) -> PaymentState:
    """The payment after an event. Order-independent: amounts only grow (max), statuses only move
    up STATUS_RANK, so events delivered late or out of order end in the same state."""
    obj = event.object
    status, captured, refunded, decline = state.status, state.captured_cents, state.refunded_cents, state.decline_code
    if event.type == EVENT_SUCCEEDED:
        received = _int(obj.get("amount_received")) or _int(obj.get("amount"))
        captured = max(captured, min(received, state.amount_cents) if received else state.amount_cents)
        status = higher(status, SUCCEEDED)
    elif event.type == EVENT_FAILED:
        if status == PENDING:
            status = DECLINED
            error = obj.get("last_payment_error") or {}
            if isinstance(error, dict):
                decline = str(error.get("decline_code") or error.get("code") or decline or "card_declined")
    elif event.type == EVENT_REFUNDED:
        captured = max(captured, min(_int(obj.get("amount_captured")) or _int(obj.get("amount")), state.amount_cents))
        refunded = max(refunded, min(_int(obj.get("amount_refunded")), captured))
        status = higher(status, SUCCEEDED) if captured else status
    refunded = min(refunded, captured)
    status = status_for_amounts(status, captured, refunded)
    return PaymentState(status, state.amount_cents, captured, refunded, decline)
