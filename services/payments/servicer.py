"""RPC handlers of the payments service: parse the request, check the caller, call the provider and
the repository, map the result. No database transaction is open while a provider call is in
flight (a slow provider must not hold the pool or block webhooks). Rules live in domain.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from services.payments import domain, repository
from services.payments.models import Payment, Refund
from services.payments.providers import PROVIDER_NAMES
from shop.lib.context import require_service
from shop.lib.db import to_timestamp, utcnow
from shop.lib.errors import (
    Aborted,
    Conflict,
    InvalidArgument,
    NotFound,
    PaymentDeclined,
    ShopError,
    Unavailable,
    ValidationError,
)
from shop.lib.server import crash_point
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

log = structlog.get_logger("payments")



def payment_to_proto(payment: Payment) -> payments_pb2.Payment:
    return payments_pb2.Payment(
        id=payment.id,
        order_id=payment.order_id,
        status=payments_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{payment.status}"),
        method=payment.method,
        brand=payment.brand,
        last4=payment.last4,
        amount_cents=payment.amount_cents,
        captured_cents=payment.captured_cents,
        refunded_cents=payment.refunded_cents,
        currency_code=payment.currency_code,
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        decline_code=payment.decline_code,
        create_time=to_timestamp(payment.created_at),
        update_time=to_timestamp(payment.updated_at),
    )


def refund_to_proto(refund: Refund) -> payments_pb2.Refund:
    return payments_pb2.Refund(
        id=refund.id,
        payment_id=refund.payment_id,
        order_id=refund.order_id,
        amount_cents=refund.amount_cents,
        status=payments_pb2.RefundStatus.Value(f"REFUND_STATUS_{refund.status}"),
        reason=refund.reason,
        create_time=to_timestamp(refund.created_at),
        provider_reference=refund.provider_reference,
        request_id=refund.request_id,
    )


def _refund_refused(refund: Refund, message: str) -> Conflict:
    return Conflict(message, code="REFUND_FAILED", details={"refundId": refund.id})


def _declined(payment: Payment) -> PaymentDeclined:
    return PaymentDeclined(
        "The card was declined.",
        details={"declineCode": payment.decline_code or "card_declined", "paymentId": payment.id},
    )


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    @property
    def db(self):
        return self.runtime.db

    @property
    def repo(self):
        return self.runtime.repository

    @property
    def provider(self):
        return self.runtime.provider

    @property
    def breaker(self):
        return self.runtime.breaker

    # -- CreateCharge ------------------------------------------------------------------------------

    async def CheckPaymentMethod(self, request, context):  # noqa: N802 - gRPC method name
        """Refuses a method or token the provider can never charge; records nothing."""
        require_service()
        domain.validate_payment_method(request.method, request.token)
        self.provider.check_token(request.token)
        return payments_pb2.CheckPaymentMethodResponse()

    async def CreateCharge(self, request, context):  # noqa: N802 - gRPC method name
        """At most one charge per order, and no database transaction open while the provider works:
        (1) the payment row (unique order id) is inserted PENDING and the request judged against it,
        committed; (2) the provider is called with idempotency key = order id, so concurrent or
        repeated callers get the same charge; (3) its answer is recorded under the domain's rules
        (statuses only move up, amounts only grow). A decline is final for the order: a repeat
        (whatever the token) answers PAYMENT_DECLINED again."""
        require_service()
        charge = domain.validate_charge(
            request.order_id, request.user_id, request.amount_cents, request.currency_code, request.method,
            request.token,
        )
        payment, inserted = await self._open_charge(charge)
        if payment.status == domain.PENDING:
            result = None
            if payment.provider_reference:
                # The provider had not decided (e.g. Stripe "processing"): ask it again.
                try:
                    result = await self.breaker.call(self.provider.retrieve, payment.provider_reference)
                except ShopError as exc:  # still unknown: answer the stored PENDING payment
                    log.warning("payment.retrieve_failed", order_id=charge.order_id, code=exc.code)
                if result is not None and result.pending:
                    result = None
            else:
                result = await self._charge_at_provider(charge, payment, inserted=inserted)
                # Crash tests: the provider charged, nothing recorded; a retry must not charge twice.
                crash_point(self.runtime.settings, "payments_after_provider_charge")
            if result is not None:
                payment = await self._record_charge(charge, result)
        if payment.status == domain.DECLINED:
            if not payment.declined_answered:
                async with self.db.write() as tx:
                    await tx.execute(repository.MARK_DECLINED_ANSWERED, payment_id=payment.id, answered=True,
                                     now=utcnow())
            raise _declined(payment)
        return payments_pb2.CreateChargeResponse(payment=payment_to_proto(payment))

    def _new_payment(self, charge: domain.ChargeRequest) -> dict:
        return repository.new_payment_values(
            order_id=charge.order_id, user_id=charge.user_id, method=charge.method,
            amount_cents=charge.amount_cents, currency_code=charge.currency_code, provider=self.provider.name,
        )

    async def _open_charge(self, charge: domain.ChargeRequest) -> tuple[Any, bool]:
        """Transaction 1: the order's payment row (a row with the payments table's columns),
        inserted PENDING if absent (and whether this call inserted it); a repeat with another amount
        or currency is CHARGE_MISMATCH. One INSERT ... ON CONFLICT DO NOTHING RETURNING, and a SELECT
        only when the order had a row already."""
        async with self.db.write() as tx:
            payment = await tx.one(repository.INSERT_PAYMENT, **self._new_payment(charge))
            inserted = payment is not None
            if inserted:
                self.breaker.check()  # failing fast: roll the new row back, nothing recorded
            else:
                payment = await tx.one(repository.PAYMENT_OF_ORDER, order_id=charge.order_id)
            assert payment is not None
        if not inserted and not domain.charge_matches(payment.amount_cents, payment.currency_code, charge):
            raise Conflict(
                "This order was already charged with a different amount or currency.",
                code="CHARGE_MISMATCH",
                details={"paymentId": payment.id},
            )
        return payment, inserted

    async def _charge_at_provider(self, charge: domain.ChargeRequest, payment: Any, *, inserted: bool):
        """The provider call, with no transaction open. A refused request (invalid token) charged
        nothing: the PENDING row this call inserted goes, so the order can be charged again (a row
        an earlier call left PENDING stays: that call may have charged). Any other failure (outage,
        timeout) may have charged: the row stays PENDING and a retry asks the provider again with
        the same key."""
        try:
            return await self.breaker.call(
                self.provider.charge,
                idempotency_key=charge.order_id,
                amount_cents=charge.amount_cents,
                currency_code=charge.currency_code,
                token=charge.token,
                metadata={"order_id": charge.order_id, "user_id": charge.user_id},
            )
        except InvalidArgument:
            if inserted:
                async with self.db.write() as tx:
                    await tx.execute(repository.DELETE_UNSENT_PAYMENT, payment_id=payment.id)
            raise

    async def _record_charge(self, charge: domain.ChargeRequest, result) -> Any:
        """Transaction 2: the provider's answer applied to the row as it is now, under its lock (a
        webhook may have got there first, or an invalid-token caller removed the row meanwhile: it
        is inserted again), in one UPDATE ... RETURNING when something changes."""
        async with self.db.write() as tx:
            payment = await tx.one(repository.PAYMENT_OF_ORDER_FOR_UPDATE, order_id=charge.order_id)
            if payment is None:
                await tx.execute(repository.INSERT_PAYMENT, **self._new_payment(charge))
                payment = await tx.one(repository.PAYMENT_OF_ORDER_FOR_UPDATE, order_id=charge.order_id)
            assert payment is not None
            before = domain.PaymentState(
                payment.status, payment.amount_cents, payment.captured_cents, payment.refunded_cents,
                payment.decline_code,
            )
            after = domain.apply_charge(
                before, succeeded=result.succeeded, pending=result.pending, captured_cents=result.captured_cents,
                decline_code=result.decline_code,
            )
            wanted = {
                "status": after.status,
                "captured_cents": after.captured_cents,
                "decline_code": after.decline_code,
                "brand": payment.brand or result.brand,
                "last4": payment.last4 or result.last4,
                "provider_reference": payment.provider_reference or result.reference,
            }
            # Only when something changes: a concurrent caller recording the same answer again
            # changes nothing (not even updated_at).
            if any(getattr(payment, key) != value for key, value in wanted.items()):
                payment = await tx.one(repository.RECORD_CHARGE, payment_id=payment.id, now=utcnow(), **wanted)
                assert payment is not None
        log.info("payment.charged", order_id=charge.order_id, status=payment.status, provider=self.provider.name)
        return payment

    # -- ListPayments ------------------------------------------------------------------------------

    async def ListPayments(self, request, context):  # noqa: N802
        require_service()
        if not request.order_id:
            raise ValidationError.single("orderId", "is required")
        payment = await self.db.read_one(repository.PAYMENT_OF_ORDER, order_id=request.order_id)
        refunds = await self.db.read_all(repository.REFUNDS_OF_ORDER, order_id=request.order_id)
        return payments_pb2.ListPaymentsResponse(
            payments=[payment_to_proto(payment)] if payment is not None else [],
            refunds=[refund_to_proto(refund) for refund in refunds],
        )

    # -- CreateRefund ------------------------------------------------------------------------------

    async def CreateRefund(self, request, context):  # noqa: N802
        """Partial or full refunds of what was captured, idempotent by request_id, with no
        transaction open while the provider works: (1) the amount is reserved (refunded_cents grows
        by a conditional update, under a short row lock) and the refund recorded PENDING; (2) the
        provider refunds with idempotency key = request_id; (3) the refund is marked SUCCEEDED. A
        provider refusal releases the reservation (refund FAILED); an unknown outcome (outage,
        timeout) leaves it PENDING, and a replay of the request id asks the provider again."""
        require_service()
        domain.validate_refund(request.order_id, request.amount_cents, request.reason, request.request_id)
        return await self._refund(request)

    async def _refund(self, request: payments_pb2.CreateRefundRequest) -> payments_pb2.CreateRefundResponse:
        """The three steps of a refund (see CreateRefund), for a validated request."""
        payment, refund = await self._reserve_refund(request)
        if refund.status == domain.REFUND_SUCCEEDED:
            return payments_pb2.CreateRefundResponse(refund=refund_to_proto(refund), payment=payment_to_proto(payment))
        if refund.status == domain.REFUND_FAILED:
            raise _refund_refused(refund, "The payment provider refused this refund; a new request id starts another.")
        if payment.provider != self.provider.name:
            raise Conflict(
                f"This payment was made with the {payment.provider} provider, which is not configured.",
                code="PROVIDER_MISMATCH",
            )
        try:
            result = await self.breaker.call(
                self.provider.refund,
                idempotency_key=refund.request_id,
                charge_reference=payment.provider_reference,
                amount_cents=refund.amount_cents,
                reason=refund.reason,
            )
        except Unavailable:
            raise  # unknown outcome: the refund stays PENDING (reserved) until a replay finishes it
        except ShopError as exc:
            await self._release_refund(refund)
            raise _refund_refused(refund, exc.message) from None
        crash_point(self.runtime.settings, "payments_after_provider_refund")
        async with self.db.transaction() as session:
            await self.repo.finish_refund(
                session, refund.id, status=domain.REFUND_SUCCEEDED, provider_reference=result.reference
            )
            payment = await self.repo.payment_by_order(session, request.order_id, for_update=True)
            assert payment is not None
            # refunded_cents counts the reservations still waiting for the provider: not refunded yet
            pending = await self.repo.pending_refunds_cents(session, payment.id)
            status = domain.status_for_amounts(
                payment.status, payment.captured_cents, payment.refunded_cents - pending
            )
            if status != payment.status:
                await self.repo.update_payment(session, payment.id, status=status)
            payment = await self.repo.payment_by_order(session, request.order_id)
            refund = await self.repo.refund_by_request_id(session, request.request_id)
            assert payment is not None and refund is not None
        log.info("payment.refunded", order_id=payment.order_id, amount_cents=refund.amount_cents, status=payment.status)
        return payments_pb2.CreateRefundResponse(refund=refund_to_proto(refund), payment=payment_to_proto(payment))

    async def _reserve_refund(self, request) -> tuple[Payment, Refund]:
        """Transaction 1 (short, the payment row locked so concurrent refunds see each other's
        reservations): the refund of this request id, reserved and recorded PENDING if new."""
        async with self.db.transaction() as session:
            payment = await self.repo.payment_by_order(session, request.order_id, for_update=True)
            if payment is None:
                raise NotFound("This order has no payment.", code="PAYMENT_NOT_FOUND")
            existing = await self.repo.refund_by_request_id(session, request.request_id)
            if existing is not None:
                if existing.order_id != request.order_id:
                    raise Conflict(
                        "This request id was already used for another order's refund.",
                        code="IDEMPOTENCY_KEY_REUSED",
                    )
                return payment, existing
            amount = domain.refund_amount(payment.captured_cents, payment.refunded_cents, request.amount_cents)
            if payment.provider != self.provider.name:
                raise Conflict(
                    f"This payment was made with the {payment.provider} provider, which is not configured.",
                    code="PROVIDER_MISMATCH",
                )
            self.breaker.check()  # failing fast: nothing reserved
            if not await self.repo.reserve_refund(session, payment.id, amount):
                raise Aborted("The payment changed concurrently; retry.", code="CONCURRENT_UPDATE")
            refund = await self.repo.add_refund(
                session,
                payment_id=payment.id,
                order_id=payment.order_id,
                request_id=request.request_id,
                amount_cents=amount,
                status=domain.REFUND_PENDING,
                reason=request.reason,
                provider_reference="",
            )
            payment = await self.repo.payment_by_order(session, request.order_id)
            assert payment is not None
        return payment, refund

    async def _release_refund(self, refund: Refund) -> None:
        """The provider refused: the refund is FAILED and its reservation given back, at once."""
        async with self.db.transaction() as session:
            if await self.repo.finish_refund(session, refund.id, status=domain.REFUND_FAILED):
                await self.repo.release_refund(session, refund.payment_id, refund.amount_cents)
        log.warning("payment.refund_refused", order_id=refund.order_id, amount_cents=refund.amount_cents)

    # -- HandleWebhook -----------------------------------------------------------------------------

    async def HandleWebhook(self, request, context):  # noqa: N802
        """A provider event, verified over the raw body, applied once (unique event id), in any
        order (amounts only grow, statuses only move up)."""
        require_service()
        if request.provider not in PROVIDER_NAMES:
            raise NotFound("No such payment provider.", code="UNKNOWN_PROVIDER")
        if request.provider != self.provider.name:
            raise NotFound("This payment provider is not configured.", code="UNKNOWN_PROVIDER")
        event = self.provider.parse_webhook(bytes(request.payload), request.signature)
        provider = self.provider.name
        async with self.db.transaction() as session:
            created = datetime.fromtimestamp(event.created, UTC) if event.created > 0 else None
            fresh = await self.repo.insert_event_if_new(
                session,
                provider=provider,
                event_id=event.id,
                event_type=event.type[:128],
                event_created_at=created,
                outcome="received",
                payment_id=None,
            )
            duplicate = not fresh
            if fresh:
                await self._apply_event(session, provider, event)
        # After the transaction: a redelivery also finishes what the first delivery left unfinished.
        await self._refund_late_capture(event)
        return payments_pb2.HandleWebhookResponse(event_id=event.id, duplicate=duplicate, event_type=event.type)

    async def _apply_event(self, session, provider: str, event) -> None:
        """A fresh event applied to its payment (statuses only move up, amounts only grow)."""
        outcome, payment_id = "ignored", None
        if event.type in domain.HANDLED_EVENTS:
            payment = await self.repo.payment_by_reference(
                session, provider, event.payment_reference, for_update=True
            )
            if payment is None and event.order_id:
                payment = await self.repo.payment_by_order(session, event.order_id, for_update=True)
            if payment is None and event.order_id:
                # One of ours, not recorded yet: refuse so that the provider delivers it again.
                raise Aborted("The payment of this event is not recorded yet.", code="PAYMENT_NOT_READY")
            if payment is not None:
                before = domain.PaymentState(
                    payment.status, payment.amount_cents, payment.captured_cents, payment.refunded_cents,
                    payment.decline_code,
                )
                after = domain.apply_event(before, event)
                changes = {}
                if after != before:
                    changes = {
                        "status": after.status,
                        "captured_cents": after.captured_cents,
                        "refunded_cents": after.refunded_cents,
                        "decline_code": after.decline_code,
                    }
                if not payment.provider_reference and event.payment_reference:
                    changes["provider_reference"] = event.payment_reference
                if changes:
                    await self.repo.update_payment(session, payment.id, **changes)
                outcome, payment_id = "applied", payment.id
                log.info("webhook.applied", event_type=event.type, order_id=payment.order_id,
                         status=after.status)
        await self.repo.set_event_outcome(session, provider, event.id, outcome, payment_id)

    async def _refund_late_capture(self, event) -> None:
        """Money captured on a payment whose charge was answered PAYMENT_DECLINED (its order failed)
        is refunded at once, under one request id per payment, so redeliveries and replays refund it
        once. Outside the webhook's transaction (no lock across the provider call); an outage
        propagates, and the provider's redelivery of the event finishes the refund."""
        if event.type not in domain.HANDLED_EVENTS:
            return
        async with self.db.session() as session:
            payment = await self.repo.payment_by_reference(session, self.provider.name, event.payment_reference)
            if payment is None and event.order_id:
                payment = await self.repo.payment_by_order(session, event.order_id)
        if payment is None or not payment.declined_answered or payment.captured_cents <= 0:
            return
        request = payments_pb2.CreateRefundRequest(
            order_id=payment.order_id, amount_cents=0, request_id=f"late-capture-{payment.id}",
            reason="Captured after the charge was answered declined",
        )
        try:
            await self._refund(request)
        except Conflict as exc:
            if exc.code == "REFUND_FAILED":  # the provider refused it: a person must look (logged, not retried)
                log.error("payment.late_capture_refund_refused", order_id=payment.order_id)
                return
            if exc.code != "REFUND_EXCEEDS_CAPTURED":  # already refunded by other requests: nothing left
                raise
        log.info("payment.late_capture_refunded", order_id=payment.order_id, captured_cents=payment.captured_cents)
