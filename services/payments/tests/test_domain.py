"""Unit tests of the payments rules (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from services.payments import domain
from services.payments.domain import PaymentState, ProviderEvent, apply_event, refund_amount
from shop.lib.errors import Conflict, ValidationError


def test_refund_amount_rules():
    assert refund_amount(1000, 0, 0) == 1000
    assert refund_amount(1000, 400, 0) == 600
    assert refund_amount(1000, 400, 600) == 600
    for captured, refunded, requested in [(1000, 400, 601), (1000, 1000, 0), (0, 0, 0), (0, 0, 1)]:
        with pytest.raises(Conflict) as info:
            refund_amount(captured, refunded, requested)
        assert info.value.code == "REFUND_EXCEEDS_CAPTURED"


def test_status_only_moves_up():
    assert domain.status_for_amounts(domain.SUCCEEDED, 1000, 1) == domain.PARTIALLY_REFUNDED
    assert domain.status_for_amounts(domain.SUCCEEDED, 1000, 1000) == domain.REFUNDED
    assert domain.status_for_amounts(domain.REFUNDED, 1000, 0) == domain.REFUNDED
    assert domain.higher(domain.SUCCEEDED, domain.DECLINED) == domain.SUCCEEDED
    assert domain.higher(domain.PENDING, domain.DECLINED) == domain.DECLINED


def test_validate_charge_reports_every_bad_field():
    with pytest.raises(ValidationError) as info:
        domain.validate_charge("", "u", 0, "dollars", "cash", "")
    assert set(info.value.fields) == {"orderId", "amountCents", "currencyCode", "payment.method", "payment.token"}
    ok = domain.validate_charge("o-1", "u", 100, "usd", "", "tok_visa")
    assert (ok.currency_code, ok.method) == ("USD", "card")


def test_validate_refund_takes_any_idempotency_key_of_the_one_rule():
    # shop.lib.idempotency: 1..128 printable ASCII (was [A-Za-z0-9._:-]{1,128})
    for key in ("refund-1", "k" * 128, "order 42 / refund #1"):
        domain.validate_refund("o-1", 0, "", key)
    for key in ("", "k" * 129, "line\nbreak", "clé"):
        with pytest.raises(ValidationError) as info:
            domain.validate_refund("o-1", 0, "", key)
        assert set(info.value.fields) == {"requestId"}


def test_signature_round_trip_and_failures():
    body, secret = b'{"id":"evt_1"}', "whsec_x"
    header = domain.signature_header(body, secret, 1_000)
    assert domain.verify_signature(body, header, secret, now=1_000, tolerance=300) == 1_000
    assert domain.verify_signature(body, header, secret, now=1_300, tolerance=300) == 1_000
    # several v1 signatures (secret rotation): any one may match
    rotated = f"t=1000,v1={'0' * 64},{header.split(',')[1]}"
    assert domain.verify_signature(body, rotated, secret, now=1_000, tolerance=300) == 1_000
    for payload, value, now in [
        (body + b" ", header, 1_000),  # tampered body
        (body, domain.signature_header(body, "other", 1_000), 1_000),  # wrong secret
        (body, header, 1_301),  # too old
        (body, header, 699),  # too far in the future
        (body, "t=abc,v1=00", 1_000),
        (body, "v1=00", 1_000),
        (body, "t=1000", 1_000),
        (body, "", 1_000),
    ]:
        with pytest.raises(domain.InvalidSignature):
            domain.verify_signature(payload, value, secret, now=now, tolerance=300)


def succeeded(created: int = 1) -> ProviderEvent:
    return ProviderEvent("e1", domain.EVENT_SUCCEEDED, created, {"id": "pi", "amount_received": 1000})


def refunded(amount: int, created: int = 2) -> ProviderEvent:
    return ProviderEvent(
        "e2",
        domain.EVENT_REFUNDED,
        created,
        {"payment_intent": "pi", "amount_captured": 1000, "amount_refunded": amount},
    )


def failed() -> ProviderEvent:
    return ProviderEvent(
        "e3", domain.EVENT_FAILED, 3, {"id": "pi", "last_payment_error": {"decline_code": "expired_card"}}
    )


PENDING = PaymentState(domain.PENDING, 1000, 0, 0, "")


@pytest.mark.parametrize(
    "events",
    [
        [succeeded(), refunded(400), refunded(1000)],
        [refunded(1000), succeeded(), refunded(400)],
        [refunded(400), refunded(1000), succeeded(), failed()],
        [failed(), refunded(1000), succeeded()],
    ],
)
def test_events_in_any_order_end_in_the_same_state(events):
    state = PENDING
    for event in events:
        state = apply_event(state, event)
    assert (state.status, state.captured_cents, state.refunded_cents) == (domain.REFUNDED, 1000, 1000)


def test_failure_declines_only_a_pending_payment():
    state = apply_event(PENDING, failed())
    assert (state.status, state.decline_code) == (domain.DECLINED, "expired_card")
    assert apply_event(apply_event(PENDING, succeeded()), failed()).status == domain.SUCCEEDED


def test_refund_event_never_exceeds_the_amount():
    state = apply_event(
        PaymentState(domain.SUCCEEDED, 1000, 1000, 0, ""),
        ProviderEvent("e", domain.EVENT_REFUNDED, 1, {"amount_captured": 5000, "amount_refunded": 5000}),
    )
    assert (state.captured_cents, state.refunded_cents, state.status) == (1000, 1000, domain.REFUNDED)


def test_parse_event_rejects_malformed_bodies():
    from shop.lib.errors import InvalidArgument

    body: Any  # malformed on purpose: not always the dict parse_event takes
    for body in (
        [],
        {},
        {"id": "e", "type": "x"},
        {"id": 1, "type": "x", "data": {"object": {}}},
        {"id": "e", "type": "x", "data": {"object": []}},
    ):
        with pytest.raises(InvalidArgument):
            domain.parse_event(body)
    event = domain.parse_event(
        {
            "id": "e",
            "type": "charge.refunded",
            "created": 5,
            "data": {"object": {"payment_intent": {"id": "pi_9"}, "metadata": {"order_id": "o"}}},
        }
    )
    assert (event.payment_reference, event.order_id, event.created) == ("pi_9", "o", 5)
