"""The small shared kits of shop.lib: validation-error collection, enum names, address rules and
idempotency keys (the loop is tests/lib/test_periodic.py, page tokens test_pagination.py)."""

from __future__ import annotations

import pytest

from shop.auth.v1 import auth_pb2
from shop.lib import addresses, idempotency
from shop.lib.enums import EnumNames, strip_prefix
from shop.lib.errors import InvalidArgument, ShopError, ValidationError
from shop.lib.validation import FieldErrors
from shop.orders.v1 import orders_pb2

# -- validation --------------------------------------------------------------------------------


def test_field_errors_collect_every_problem_into_one_validation_error():
    errors = FieldErrors()
    errors.raise_if_any()  # nothing collected: nothing raised
    assert not errors
    errors.add("lastName", "is required")
    errors.add("lastName", "must be at most 50 characters")
    errors.no_nul("reason", "a\x00b")
    errors.no_nul("note", "fine")
    nested = FieldErrors(prefix="shippingAddress")
    nested.set("city", "is required")
    nested.set("city", "must be at most 200 characters")
    errors.merge(nested)
    with pytest.raises(ValidationError) as caught:
        errors.raise_if_any()
    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.fields == {
        "lastName": ["is required", "must be at most 50 characters"],
        "reason": ["must not contain NUL characters"],
        "shippingAddress.city": ["must be at most 200 characters"],
    }
    caught.value.fields["lastName"].append("x")  # the error holds its own copy
    assert len(errors.fields["lastName"]) == 2


# -- enum names --------------------------------------------------------------------------------


def test_enum_names_strip_and_add_the_type_prefix():
    roles = EnumNames(auth_pb2.Role)
    assert roles.prefix == "ROLE_"
    assert roles.name(auth_pb2.ROLE_ADMIN) == "ADMIN" and roles.value("ADMIN") == auth_pb2.ROLE_ADMIN
    assert roles.names == ("CUSTOMER", "SELLER", "ADMIN")
    assert roles.optional(auth_pb2.ROLE_UNSPECIFIED) is None and roles.optional(auth_pb2.ROLE_SELLER) == "SELLER"
    assert roles.value_or_unspecified(None) == roles.value_or_unspecified("") == auth_pb2.ROLE_UNSPECIFIED
    statuses = EnumNames(orders_pb2.OrderStatus)
    assert statuses.name(orders_pb2.ORDER_STATUS_PAYMENT_FAILED) == "PAYMENT_FAILED"
    assert statuses.value("PAYMENT_FAILED") == orders_pb2.ORDER_STATUS_PAYMENT_FAILED
    with pytest.raises(ValueError):
        statuses.value("ORDER_STATUS_PAID")  # API names only
    with pytest.raises(ValueError):
        statuses.name(999)
    assert strip_prefix("ROLE_CUSTOMER", "ROLE_") == "CUSTOMER" and strip_prefix("OTHER", "ROLE_") == "OTHER"


# -- addresses ---------------------------------------------------------------------------------


def test_countries_are_the_assigned_iso_codes_from_pycountry():
    assert len(addresses.COUNTRY_CODES) == 249 and {"DE", "US", "GB", "NO", "AX"} <= addresses.COUNTRY_CODES
    errors = FieldErrors()
    assert addresses.clean_country(errors, "country", " de ") == "DE"
    assert not errors
    for bad in ("XX", "ZZ", "Germany", "", "DEU"):
        errors = FieldErrors()
        addresses.clean_country(errors, "country", bad)
        assert errors.fields == {"country": [addresses.COUNTRY_MESSAGE]}


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+49 30 1234567", None),
        ("+1 555 0100", None),
        ("+1 (555) 010-0100", None),
        ("+44 20 7946 0958", "DE"),
        ("030 1234567", "DE"),
        ("555 0100", "US"),
        ("020 7946 0958", "gb"),
        ("", None),
    ],
)
def test_possible_phone_numbers_are_kept_as_typed(number, country):
    errors = FieldErrors()
    assert addresses.clean_phone(errors, "phone", f"  {number} ", country) == number
    assert not errors


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("call me maybe", None),
        ("nope", "US"),
        ("030 1234567", None),  # no country: international form
        ("+49 1", None),
        ("+1 555 0100 ext. 5; DROP", None),
        ("+" + "1" * 40, None),
    ],
)
def test_other_phone_numbers_are_refused(number, country):
    errors = FieldErrors(prefix="shippingAddress")
    addresses.clean_phone(errors, "phone", number, country)
    assert list(errors.fields) == ["shippingAddress.phone"]


# -- idempotency keys --------------------------------------------------------------------------


def test_one_key_rule_128_printable_ascii_characters():
    assert idempotency.clean_key("  order-1  ") == "order-1"
    assert idempotency.clean_key("k" * 128) == "k" * 128
    assert idempotency.clean_key("with space/and:punctuation~") == "with space/and:punctuation~"
    assert idempotency.clean_key(None) is None
    for bad in ("k" * 129, "line\nbreak", "ключ", "tab\tinside", "", "   "):
        with pytest.raises(ValidationError) as caught:
            idempotency.clean_key(bad, field_name="requestId")
        assert caught.value.fields == {"requestId": [idempotency.KEY_MESSAGE]}
    for missing in (None, "", "  "):
        with pytest.raises(InvalidArgument) as refused:
            idempotency.clean_key(missing, required=True)
        assert refused.value.code == "IDEMPOTENCY_KEY_REQUIRED"
    assert idempotency.is_valid_key("abc") and not idempotency.is_valid_key("")


def test_one_fingerprint_per_request_whoever_computes_it():
    request = orders_pb2.CreateOrderRequest(
        request_id="key-1", payment_method="card", payment_token="tok_visa", address_id="a1"
    )
    same_but_other_key = orders_pb2.CreateOrderRequest(
        request_id="key-2",
        request_fingerprint="anything",
        payment_method="card",
        payment_token="tok_visa",
        address_id="a1",
    )
    fp = idempotency.message_fingerprint(request)
    assert fp == idempotency.message_fingerprint(same_but_other_key)
    assert fp == idempotency.fingerprint({"payment_method": "card", "payment_token": "tok_visa", "address_id": "a1"})
    assert len(fp) == 64
    other = orders_pb2.CreateOrderRequest(
        request_id="key-1", payment_method="card", payment_token="tok_mastercard", address_id="a1"
    )
    assert idempotency.message_fingerprint(other) != fp
    # the same key from two users names two requests
    assert idempotency.scoped_key("u1", "k") != idempotency.scoped_key("u2", "k")
    assert len(idempotency.scoped_key("u1", "k" * 128)) == 64


def test_replay_rules_and_their_errors():
    idempotency.check_replay("fp", "fp")
    idempotency.check_replay("fp", "fp", stored_operation="refund", operation="refund")
    for stored, operation in (("other", "create"), ("fp", "refund")):
        with pytest.raises(ShopError) as caught:
            idempotency.check_replay(stored, "fp", stored_operation=operation, operation="create")
        assert caught.value.code == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(ShopError) as caught:
        idempotency.check_replay("a", "b", message="This idempotency key was used for another product.")
    assert caught.value.message == "This idempotency key was used for another product."
    assert idempotency.in_progress().code == "REQUEST_IN_PROGRESS"
    assert idempotency.is_replayed([("x", "y"), ("idempotent-replayed", "true")])
    assert not idempotency.is_replayed(None) and not idempotency.is_replayed([("idempotent-replayed", "false")])
