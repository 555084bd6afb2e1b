"""Use case of CreateRefund: partial or full refunds of what was captured, idempotent by request
id, with no transaction open while the provider works:

(1) `_reserve`: under a short lock of the payment row, the amount is reserved (refunded_cents
grows by a conditional update) and the refund recorded PENDING; commit. (2) The provider refunds
with idempotency key = request id. (3) `_finish`: the refund is SUCCEEDED and the payment's status
follows. A provider refusal releases the reservation (refund FAILED, `_release`); an unknown
outcome (outage, timeout) leaves it PENDING, and a replay of the request id asks the provider
again. Each step is one ORM transaction (`db.transaction()`); the queries are `repository.py`'s.
`runtime` is the service's `server.Runtime`; its `provider` and `breaker` are read at each call.
"""

from __future__ import annotations

import structlog

from services.payments import domain, repository
from services.payments.models import Payment, Refund
from shop.lib.errors import Aborted, Conflict, NotFound, ShopError, Unavailable
from shop.lib.idempotency import key_reused
from shop.lib.server import crash_point

log = structlog.get_logger("payments")


async def create_refund(
    runtime, order_id: str, amount_cents: int, reason: str, request_id: str
) -> tuple[Payment, Refund]:
    """The three steps of a refund (see the module docstring), for a validated request: the
    payment and the refund as they are after it."""
    payment, refund = await _reserve(runtime, order_id, amount_cents, reason, request_id)
    if refund.status == domain.REFUND_SUCCEEDED:
        return payment, refund
    if refund.status == domain.REFUND_FAILED:
        raise _refused(refund, "The payment provider refused this refund; a new request id starts another.")
    _check_provider(runtime, payment)
    try:
        result = await runtime.breaker.call(
            runtime.provider.refund,
            idempotency_key=refund.request_id,
            charge_reference=payment.provider_reference,
            amount_cents=refund.amount_cents,
            reason=refund.reason,
        )
    except Unavailable:
        raise  # unknown outcome: the refund stays PENDING (reserved) until a replay finishes it
    except ShopError as exc:
        await _release(runtime, refund)
        raise _refused(refund, exc.message) from None
    crash_point(runtime.settings, "payments_after_provider_refund")
    payment, refund = await _finish(runtime, order_id, refund.id, request_id, result.reference)
    log.info("payment.refunded", order_id=payment.order_id, amount_cents=refund.amount_cents, status=payment.status)
    return payment, refund


async def _reserve(runtime, order_id: str, amount_cents: int, reason: str, request_id: str) -> tuple[Payment, Refund]:
    """Transaction 1 (short, the payment row locked so concurrent refunds see each other's
    reservations): the refund of this request id, reserved and recorded PENDING if new."""
    async with runtime.db.transaction() as session:
        payment = await repository.payment_by_order(session, order_id, for_update=True)
        if payment is None:
            raise NotFound("This order has no payment.", code="PAYMENT_NOT_FOUND")
        existing = await repository.refund_by_request_id(session, request_id)
        if existing is not None:
            if existing.order_id != order_id:
                raise key_reused("This request id was already used for another order's refund.")
            return payment, existing
        amount = domain.refund_amount(payment.captured_cents, payment.refunded_cents, amount_cents)
        _check_provider(runtime, payment)
        runtime.breaker.check()  # failing fast: nothing reserved
        if not await repository.reserve_refund(session, payment.id, amount):
            raise Aborted("The payment changed concurrently; retry.", code="CONCURRENT_UPDATE")
        refund = await repository.add_refund(
            session,
            payment_id=payment.id,
            order_id=payment.order_id,
            request_id=request_id,
            amount_cents=amount,
            status=domain.REFUND_PENDING,
            reason=reason,
            provider_reference="",
        )
        payment = await repository.payment_by_order(session, order_id)
        assert payment is not None
    return payment, refund


async def _finish(runtime, order_id: str, refund_id: str, request_id: str, reference: str) -> tuple[Payment, Refund]:
    """Transaction 2: the refund SUCCEEDED, the payment's status following its amounts."""
    async with runtime.db.transaction() as session:
        await repository.finish_refund(session, refund_id, status=domain.REFUND_SUCCEEDED, provider_reference=reference)
        payment = await repository.payment_by_order(session, order_id, for_update=True)
        assert payment is not None
        # refunded_cents counts the reservations still waiting for the provider: not refunded yet
        pending = await repository.pending_refunds_cents(session, payment.id)
        status = domain.status_for_amounts(payment.status, payment.captured_cents, payment.refunded_cents - pending)
        if status != payment.status:
            await repository.update_payment(session, payment.id, status=status)
        payment = await repository.payment_by_order(session, order_id)
        refund = await repository.refund_by_request_id(session, request_id)
        assert payment is not None and refund is not None
    return payment, refund


async def _release(runtime, refund: Refund) -> None:
    """The provider refused: the refund is FAILED and its reservation given back, at once."""
    async with runtime.db.transaction() as session:
        if await repository.finish_refund(session, refund.id, status=domain.REFUND_FAILED):
            await repository.release_refund(session, refund.payment_id, refund.amount_cents)
    log.warning("payment.refund_refused", order_id=refund.order_id, amount_cents=refund.amount_cents)


def _check_provider(runtime, payment: Payment) -> None:
    """A payment is refunded through the provider that took it, which must still be configured."""
    if payment.provider != runtime.provider.name:
        raise Conflict(
            f"This payment was made with the {payment.provider} provider, which is not configured.",
            code="PROVIDER_MISMATCH",
        )


def _refused(refund: Refund, message: str) -> Conflict:
    return Conflict(message, code="REFUND_FAILED", details={"refundId": refund.id})
