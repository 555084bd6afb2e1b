"""Use case of HandleWebhook: a provider event, verified over the raw body, applied once (unique
event id, inserted first in the same ORM transaction), in any order (amounts only grow, statuses
only move up: `domain.apply_event`). After that transaction, money captured on a payment whose
charge was answered declined is refunded (`refunds.create_refund`, no lock across the provider
call). `runtime` is the service's `server.Runtime`; its `provider` is read at each call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from services.payments import domain, refunds, repository
from services.payments.providers import PROVIDER_NAMES
from shop.lib.errors import Aborted, Conflict, NotFound

log = structlog.get_logger("payments")


async def handle_webhook(runtime, provider_name: str, payload: bytes, signature: str) -> tuple[Any, bool]:
    """The verified event and whether it was a duplicate (applied before)."""
    if provider_name not in PROVIDER_NAMES:
        raise NotFound("No such payment provider.", code="UNKNOWN_PROVIDER")
    if provider_name != runtime.provider.name:
        raise NotFound("This payment provider is not configured.", code="UNKNOWN_PROVIDER")
    event = runtime.provider.parse_webhook(payload, signature)
    provider = runtime.provider.name
    async with runtime.db.transaction() as session:
        created = datetime.fromtimestamp(event.created, UTC) if event.created > 0 else None
        fresh = await repository.insert_event_if_new(
            session,
            provider=provider,
            event_id=event.id,
            event_type=event.type[:128],
            event_created_at=created,
            outcome="received",
            payment_id=None,
        )
        if fresh:
            await _apply_event(session, provider, event)
    # After the transaction: a redelivery also finishes what the first delivery left unfinished.
    await _refund_late_capture(runtime, event)
    return event, not fresh


async def _apply_event(session, provider: str, event) -> None:
    """A fresh event applied to its payment (statuses only move up, amounts only grow)."""
    outcome, payment_id = "ignored", None
    if event.type in domain.HANDLED_EVENTS:
        payment = await repository.payment_by_reference(session, provider, event.payment_reference, for_update=True)
        if payment is None and event.order_id:
            payment = await repository.payment_by_order(session, event.order_id, for_update=True)
        if payment is None and event.order_id:
            # One of ours, not recorded yet: refuse so that the provider delivers it again.
            raise Aborted("The payment of this event is not recorded yet.", code="PAYMENT_NOT_READY")
        if payment is not None:
            before = domain.PaymentState.of(payment)
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
                await repository.update_payment(session, payment.id, **changes)
            outcome, payment_id = "applied", payment.id
            log.info("webhook.applied", event_type=event.type, order_id=payment.order_id, status=after.status)
    await repository.set_event_outcome(session, provider, event.id, outcome, payment_id)


async def _refund_late_capture(runtime, event) -> None:
    """Money captured on a payment whose charge was answered PAYMENT_DECLINED (its order failed)
    is refunded at once, under one request id per payment, so redeliveries and replays refund it
    once. Outside the webhook's transaction (no lock across the provider call); an outage
    propagates, and the provider's redelivery of the event finishes the refund."""
    if event.type not in domain.HANDLED_EVENTS:
        return
    async with runtime.db.session() as session:
        payment = await repository.payment_by_reference(session, runtime.provider.name, event.payment_reference)
        if payment is None and event.order_id:
            payment = await repository.payment_by_order(session, event.order_id)
    if payment is None or not payment.declined_answered or payment.captured_cents <= 0:
        return
    try:
        await refunds.create_refund(
            runtime,
            payment.order_id,
            0,
            "Captured after the charge was answered declined",
            f"late-capture-{payment.id}",
        )
    except Conflict as exc:
        if exc.code == "REFUND_FAILED":  # the provider refused it: a person must look (logged, not retried)
            log.error("payment.late_capture_refund_refused", order_id=payment.order_id)
            return
        if exc.code != "REFUND_EXCEEDS_CAPTURED":  # already refunded by other requests: nothing left
            raise
    log.info("payment.late_capture_refunded", order_id=payment.order_id, captured_cents=payment.captured_cents)
