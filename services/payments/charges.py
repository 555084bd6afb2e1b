"""Use cases of charges: CheckPaymentMethod, GetPaymentRules, CreateCharge, ListPayments (the checkout's hot path,
all on the lean DB path: `shop.lib.db.Query` statements, no ORM).

CreateCharge is at most one charge per order, with no database transaction open while the
provider works: (1) the payment row (unique order id) is inserted PENDING and the request judged
against it, committed; (2) the provider is called with idempotency key = order id, so concurrent or
repeated callers get the same charge; (3) its answer is recorded under the domain's rules
(statuses only move up, amounts only grow). A decline is final for the order: a repeat (whatever
the token) answers PAYMENT_DECLINED again. `runtime` is the service's `server.Runtime`; its
`provider` and `breaker` are read at each call.
"""

from __future__ import annotations

from typing import Any

import structlog

from services.payments import domain, repository
from shop.lib.db import utcnow
from shop.lib.errors import Conflict, InvalidArgument, PaymentDeclined, ShopError
from shop.lib.server import crash_point

log = structlog.get_logger("payments")
# How long a caller may keep GetPaymentRules' answer (the provider is chosen at start-up; a
# restart with another one is seen by callers within this).
PAYMENT_RULES_MAX_AGE_SECONDS = 60


def check_payment_method(runtime, method: str, token: str) -> None:
    """Refuses a method or token the provider can never charge; records nothing."""
    domain.validate_payment_method(method, token)
    runtime.provider.check_token(token)


async def create_charge(runtime, charge: domain.ChargeRequest) -> Any:
    """The order's payment row after charging it (see the module docstring); PAYMENT_DECLINED
    when the provider declined it, now or before."""
    payment, inserted = await _open_charge(runtime, charge)
    if payment.status == domain.PENDING:
        result = None
        if payment.provider_reference:
            # The provider had not decided (e.g. Stripe "processing"): ask it again.
            try:
                result = await runtime.breaker.call(runtime.provider.retrieve, payment.provider_reference)
            except ShopError as exc:  # still unknown: answer the stored PENDING payment
                log.warning("payment.retrieve_failed", order_id=charge.order_id, code=exc.code)
            if result is not None and result.pending:
                result = None
        else:
            result = await _charge_at_provider(runtime, charge, payment, inserted=inserted)
            # Crash tests: the provider charged, nothing recorded; a retry must not charge twice.
            crash_point(runtime.settings, "payments_after_provider_charge")
        if result is not None:
            payment = await _record_charge(runtime, charge, result, seen=payment)
    if payment.status == domain.DECLINED:
        if not payment.declined_answered:
            async with runtime.db.write() as tx:
                await tx.execute(repository.MARK_DECLINED_ANSWERED, payment_id=payment.id, answered=True, now=utcnow())
        raise _declined(payment)
    return payment


async def list_payments(runtime, order_id: str) -> tuple[Any | None, list]:
    """The order's payment (or None) and its refunds, oldest first: two lean reads."""
    payment = await runtime.db.read_one(repository.PAYMENT_OF_ORDER, order_id=order_id)
    refunds = await runtime.db.read_all(repository.REFUNDS_OF_ORDER, order_id=order_id)
    return payment, refunds


def _new_payment(runtime, charge: domain.ChargeRequest) -> dict:
    return repository.new_payment_values(
        order_id=charge.order_id,
        user_id=charge.user_id,
        method=charge.method,
        amount_cents=charge.amount_cents,
        currency_code=charge.currency_code,
        provider=runtime.provider.name,
    )


async def _open_charge(runtime, charge: domain.ChargeRequest) -> tuple[Any, bool]:
    """Step 1: the order's payment row (a row with the payments table's columns), inserted
    PENDING if absent (and whether this call inserted it); a repeat with another amount or
    currency is CHARGE_MISMATCH. One INSERT ... ON CONFLICT DO NOTHING RETURNING on its own
    (autocommit), and a read only when the order had a row already. A row inserted while the
    breaker is open goes again at once (failing fast, nothing recorded)."""
    payment = None
    while payment is None:  # (the row may go between the two: an invalid-token caller removed it)
        inserted_rows = await runtime.db.write_one(repository.INSERT_PAYMENT, **_new_payment(runtime, charge))
        inserted = bool(inserted_rows)
        if inserted:
            payment = inserted_rows[0]
            try:
                runtime.breaker.check()
            except ShopError:
                await runtime.db.write_one(repository.DELETE_UNSENT_PAYMENT, payment_id=payment.id)
                raise
        else:
            payment = await runtime.db.read_one(repository.PAYMENT_OF_ORDER, order_id=charge.order_id)
    if not inserted and not domain.charge_matches(payment.amount_cents, payment.currency_code, charge):
        raise Conflict(
            "This order was already charged with a different amount or currency.",
            code="CHARGE_MISMATCH",
            details={"paymentId": payment.id},
        )
    return payment, inserted


async def _charge_at_provider(runtime, charge: domain.ChargeRequest, payment: Any, *, inserted: bool):
    """The provider call, with no transaction open. A refused request (invalid token) charged
    nothing: the PENDING row this call inserted goes, so the order can be charged again (a row
    an earlier call left PENDING stays: that call may have charged). Any other failure (outage,
    timeout) may have charged: the row stays PENDING and a retry asks the provider again with
    the same key."""
    try:
        return await runtime.breaker.call(
            runtime.provider.charge,
            idempotency_key=charge.order_id,
            amount_cents=charge.amount_cents,
            currency_code=charge.currency_code,
            token=charge.token,
            metadata={"order_id": charge.order_id, "user_id": charge.user_id},
        )
    except InvalidArgument:
        if inserted:
            async with runtime.db.write() as tx:
                await tx.execute(repository.DELETE_UNSENT_PAYMENT, payment_id=payment.id)
        raise


async def _record_charge(runtime, charge: domain.ChargeRequest, result, seen: Any) -> Any:
    """Step 3: the provider's answer applied to the row. `seen` is the row as this call read it:
    if the answer changes it and it is still as seen, one guarded UPDATE ... RETURNING records it
    (no lock, no transaction: the common case). Otherwise (a webhook got there first, or an
    invalid-token caller removed the row meanwhile: it is inserted again) the answer is applied
    to the row as it is now, under its lock."""
    payment = None
    wanted = _charge_applied(seen, result)
    if _changes(seen, wanted):
        recorded = await runtime.db.write_one(
            repository.RECORD_CHARGE_IF_UNCHANGED,
            payment_id=seen.id,
            now=utcnow(),
            **wanted,
            **{f"seen_{name}": getattr(seen, name) for name in _SEEN},
        )
        payment = recorded[0] if recorded else None
    if payment is None:
        async with runtime.db.write() as tx:
            payment = await tx.one(repository.PAYMENT_OF_ORDER_FOR_UPDATE, order_id=charge.order_id)
            if payment is None:
                await tx.execute(repository.INSERT_PAYMENT, **_new_payment(runtime, charge))
                payment = await tx.one(repository.PAYMENT_OF_ORDER_FOR_UPDATE, order_id=charge.order_id)
            assert payment is not None
            wanted = _charge_applied(payment, result)
            # Only when something changes: a concurrent caller recording the same answer again
            # changes nothing (not even updated_at).
            if _changes(payment, wanted):
                payment = await tx.one(repository.RECORD_CHARGE, payment_id=payment.id, now=utcnow(), **wanted)
                assert payment is not None
    log.info("payment.charged", order_id=charge.order_id, status=payment.status, provider=runtime.provider.name)
    return payment


# What `_charge_applied` reads of a row besides the amount (which never changes): the guard of
# RECORD_CHARGE_IF_UNCHANGED.
_SEEN = ("status", "captured_cents", "refunded_cents", "decline_code", "brand", "last4", "provider_reference")


def _charge_applied(payment: Any, result) -> dict[str, Any]:
    """The columns RECORD_CHARGE sets: the provider's answer applied to `payment` by the domain's
    rules (statuses only move up, amounts only grow; card details and reference kept once known)."""
    after = domain.apply_charge(
        domain.PaymentState.of(payment),
        succeeded=result.succeeded,
        pending=result.pending,
        captured_cents=result.captured_cents,
        decline_code=result.decline_code,
    )
    return {
        "status": after.status,
        "captured_cents": after.captured_cents,
        "decline_code": after.decline_code,
        "brand": payment.brand or result.brand,
        "last4": payment.last4 or result.last4,
        "provider_reference": payment.provider_reference or result.reference,
    }


def _changes(payment: Any, wanted: dict[str, Any]) -> bool:
    return any(getattr(payment, key) != value for key, value in wanted.items())


def _declined(payment: Any) -> PaymentDeclined:
    return PaymentDeclined(
        "The card was declined.",
        details={"declineCode": payment.decline_code or "card_declined", "paymentId": payment.id},
    )
