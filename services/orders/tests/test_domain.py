"""Rules of the orders service without I/O: totals, numbers, transitions, validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.orders import domain
from shop.lib.errors import Conflict, ValidationError


@pytest.mark.parametrize(
    ("subtotal", "tax"),
    [
        (0, 0),
        (1, 0),  # 0.08 → 0
        (6, 0),  # 0.48 → 0
        (7, 1),  # 0.56 → 1
        (1006, 80),  # 80.48 → 80
        (1019, 82),  # 81.52 → 82
        (1000, 80),
        (9999, 800),  # 799.92 → 800
        (10000, 800),
        (195625, 15650),
        (1_000_006, 80_000),  # 80000.48 → 80000
    ],
)
def test_tax_is_eight_percent_rounded_half_up(subtotal, tax):
    assert domain.tax_cents(subtotal) == tax


def test_eight_percent_of_whole_cents_never_ends_in_exactly_half_a_cent():
    # 8 % of n cents is 2n/25: its fraction is a multiple of 0.04, so half-up only ever sees
    # .48 (down) and .52 (up); the integer formula matches exact decimal half-up rounding.
    from decimal import ROUND_HALF_UP, Decimal

    for subtotal in range(0, 20_000):
        exact = (Decimal(subtotal) * Decimal("0.08")).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert domain.tax_cents(subtotal) == int(exact)
        assert (subtotal * 8) % 100 != 50


def test_shipping_is_free_from_10000_cents():
    assert domain.shipping_cents(9999) == 999
    assert domain.shipping_cents(10000) == 0
    assert domain.shipping_cents(1) == 999


def test_totals_add_up():
    totals = domain.compute_totals([(1006, 1)])
    assert totals == domain.Totals(1006, 80, 999, 1006 + 80 + 999)
    totals = domain.compute_totals([(2500, 4)])
    assert totals == domain.Totals(10000, 800, 0, 10800)
    totals = domain.compute_totals([(3333, 3), (1, 1)])
    assert totals.subtotal_cents == 10000 and totals.shipping_cents == 0


def test_order_numbers_are_dated_and_unambiguous():
    now = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)
    numbers = {domain.order_number(now) for _ in range(2000)}
    assert len(numbers) > 1990
    for number in numbers:
        assert domain.NUMBER_PATTERN.match(number), number
        assert number.startswith("ORD-20261121-")
        assert not set(number[13:]) & set("0O1IL")


@pytest.mark.parametrize(
    ("current", "target"),
    [("PAID", "PROCESSING"), ("PROCESSING", "SHIPPED"), ("SHIPPED", "DELIVERED")],
)
def test_fulfilment_ladder(current, target):
    domain.check_transition(current, target, "UPS", "1Z999")


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("PAID", "SHIPPED"),
        ("PAID", "DELIVERED"),
        ("PENDING", "PROCESSING"),
        ("PROCESSING", "PAID"),
        ("DELIVERED", "SHIPPED"),
        ("CANCELLED", "PROCESSING"),
        ("PAYMENT_FAILED", "PROCESSING"),
        ("REFUNDED", "PROCESSING"),
        ("SHIPPED", "SHIPPED"),
    ],
)
def test_other_transitions_are_refused(current, target):
    with pytest.raises(Conflict) as caught:
        domain.check_transition(current, target, "UPS", "1Z999")
    assert caught.value.code == "INVALID_TRANSITION"


def test_shipped_needs_carrier_and_tracking_number():
    with pytest.raises(ValidationError) as caught:
        domain.check_transition("PROCESSING", "SHIPPED", " ", "")
    assert set(caught.value.fields) == {"carrier", "trackingNumber"}


@pytest.mark.parametrize("status", ["PENDING", "PAID", "PROCESSING"])
def test_cancellable(status):
    domain.check_cancellable(status)


@pytest.mark.parametrize("status", ["SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED", "PAYMENT_FAILED"])
def test_not_cancellable(status):
    with pytest.raises(Conflict) as caught:
        domain.check_cancellable(status)
    assert caught.value.code == "ORDER_NOT_CANCELLABLE"


def test_refund_amounts():
    assert domain.check_refundable("PAID", 5000, 0) == 5000
    assert domain.check_refundable("SHIPPED", 5000, 1200) == 1200
    for status, remaining, requested in [
        ("PAID", 5000, 5001),
        ("PAID", 0, 0),
        ("CANCELLED", 5000, 1),
        ("PAYMENT_FAILED", 0, 1),
    ]:
        with pytest.raises(Conflict) as caught:
            domain.check_refundable(status, remaining, requested)
        assert caught.value.code == "REFUND_EXCEEDS_CAPTURED"


GOOD_ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "line1": "1 Main St",
    "city": "London",
    "postal_code": "N1 1AA",
    "country": "gb",
}


def test_address_is_normalised():
    clean = domain.validate_address({**GOOD_ADDRESS, "city": "  London "})
    assert clean["country"] == "GB" and clean["city"] == "London" and clean["line2"] == ""


def test_address_errors_name_every_bad_field():
    with pytest.raises(ValidationError) as caught:
        domain.validate_address({**GOOD_ADDRESS, "first_name": "", "country": "XX", "line1": " "})
    assert set(caught.value.fields) == {"shippingAddress.firstName", "shippingAddress.country", "shippingAddress.line1"}
    with pytest.raises(ValidationError) as caught:
        domain.validate_address({**GOOD_ADDRESS, "country": "GBR"})
    assert "shippingAddress.country" in caught.value.fields


def test_shipping_phone_is_a_possible_number_for_the_country():
    assert domain.validate_address({**GOOD_ADDRESS, "phone": " 020 7946 0958 "})["phone"] == "020 7946 0958"
    for phone in ("12", "call me", "+44 20 7946 0958 0000 0000 0000 0000"):
        with pytest.raises(ValidationError) as caught:
            domain.validate_address({**GOOD_ADDRESS, "phone": phone})
        assert set(caught.value.fields) == {"shippingAddress.phone"}
    # A saved address keeps the phone auth accepted when it was saved.
    assert domain.validate_address({**GOOD_ADDRESS, "phone": "12"}, prefix="address", saved=True)["phone"] == "12"


def test_shipping_postal_code_follows_the_documented_rule():
    # 40 characters as sent is the documented maxLength (spaces around the code count too).
    assert domain.validate_address({**GOOD_ADDRESS, "postal_code": " N1 1AA".ljust(40)})["postal_code"] == "N1 1AA"
    for code in (" N1 1AA".ljust(41), "<script>", "N1_1AA", "X" * 21):
        with pytest.raises(ValidationError) as caught:
            domain.validate_address({**GOOD_ADDRESS, "postal_code": code})
        assert set(caught.value.fields) == {"shippingAddress.postalCode"}, code


def test_payment_validation():
    domain.validate_payment("card", "tok_visa")
    with pytest.raises(ValidationError) as caught:
        domain.validate_payment("cash", "")
    assert set(caught.value.fields) == {"payment.method", "payment.token"}


def test_a_pending_order_waits_for_its_charge_outcome_before_a_cancel():
    for running in (False, True):
        with pytest.raises(Conflict) as caught:
            domain.check_pending_cancellable(domain.Stage.RESERVED, running)
        assert caught.value.retry_after is not None
        assert caught.value.code == "PAYMENT_IN_PROGRESS" and caught.value.retry_after >= 1
    for stage in (domain.Stage.NEW, domain.Stage.PRICED):
        with pytest.raises(Conflict) as caught:
            domain.check_pending_cancellable(stage, True)
        assert caught.value.code == "ORDER_NOT_CANCELLABLE"
        domain.check_pending_cancellable(stage, False)  # no charge attempted, no driver: cancellable
