"""Stock rules: manual adjustments, stock lines and reservation ids, and the reservation
protocol's transitions (what each status allows; the use cases in stock.py run each in one
transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.catalog.domain.inputs import check_text, is_uuid
from services.catalog.domain.products import ACTIVE
from shop.lib.errors import Conflict, NotFound, ValidationError
from shop.lib.validation import FieldErrors

RESERVED = "RESERVED"
COMMITTED = "COMMITTED"
RELEASED = "RELEASED"
RESTOCKED = "RESTOCKED"

MAX_STOCK_DELTA = 1_000_000
REASON_MAX = 200
MAX_RESERVATION_LINES = 200
MAX_LINE_QUANTITY = 10_000
RESERVATION_ID_MAX = 64


# -- manual adjustments ------------------------------------------------------------------------


def validate_stock_adjustment(delta: int, reason: str) -> str:
    errors = FieldErrors()
    if delta == 0:
        errors.add("delta", "must not be 0")
    elif abs(delta) > MAX_STOCK_DELTA:
        errors.add("delta", f"must be between -{MAX_STOCK_DELTA} and {MAX_STOCK_DELTA}")
    reason = check_text(errors, "reason", reason, min_len=1, max_len=REASON_MAX, one_line=True)
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


# -- reservation inputs ------------------------------------------------------------------------


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


# -- the reservation protocol: what each status allows -----------------------------------------


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
