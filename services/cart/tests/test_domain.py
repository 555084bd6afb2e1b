"""Unit tests of the cart's pure rules (services/cart/domain.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.cart import domain
from services.cart.domain import Line, Owner, ProductInfo
from shop.lib.context import Caller
from shop.lib.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, ValidationError
from shop.lib.idempotency import check_replay, clean_key

USER = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
SESSION = str(uuid.uuid4())
ORDERS = {"orders"}


def product(
    pid: str | None = None, *, price: int = 1000, stock: int = 10, active: bool = True, currency: str = "USD"
) -> ProductInfo:
    return ProductInfo(
        id=pid or str(uuid.uuid4()),
        sku="SKU-1",
        name="Thing",
        price_cents=price,
        currency=currency,
        stock=stock,
        active=active,
    )


# -- ids and owners -------------------------------------------------------------------------------


def test_parse_uuid_accepts_one_canonical_spelling():
    value = str(uuid.uuid4())
    assert domain.parse_uuid(value.upper(), "productId") == value
    for bad in ["", "nope", value[:-1], value.replace("-", ""), "{" + value + "}", "urn:uuid:" + value, " " + value]:
        with pytest.raises(ValidationError) as info:
            domain.parse_uuid(bad, "productId")
        assert "productId" in info.value.fields


def test_cart_ids_are_stable_per_owner_and_distinct():
    assert Owner(user_id=USER).cart_id == Owner(user_id=USER).cart_id
    ids = {Owner(user_id=USER).cart_id, Owner(user_id=OTHER).cart_id, Owner(session_id=USER).cart_id}
    assert len(ids) == 3
    uuid.UUID(Owner(session_id=SESSION).cart_id)


def test_user_token_selects_own_cart():
    caller = Caller(user_id=USER, role="CUSTOMER", service="gateway")
    assert domain.resolve_owner(caller, "", "", ORDERS) == Owner(user_id=USER)
    assert domain.resolve_owner(caller, USER, "", ORDERS) == Owner(user_id=USER)


def test_user_token_cannot_name_another_cart():
    caller = Caller(user_id=USER, role="CUSTOMER")
    with pytest.raises(PermissionDenied):
        domain.resolve_owner(caller, OTHER, "", ORDERS)
    with pytest.raises(InvalidArgument):
        domain.resolve_owner(caller, "", SESSION, ORDERS)


def test_service_identities():
    orders = Caller(service="orders")
    assert domain.resolve_owner(orders, USER, "", ORDERS) == Owner(user_id=USER)
    gateway = Caller(service="gateway")
    assert domain.resolve_owner(gateway, "", SESSION, ORDERS) == Owner(session_id=SESSION)
    with pytest.raises(PermissionDenied):
        domain.resolve_owner(gateway, USER, "", ORDERS)
    with pytest.raises(ValidationError):
        domain.resolve_owner(orders, USER, SESSION, ORDERS)
    with pytest.raises(ValidationError):
        domain.resolve_owner(gateway, "", "", ORDERS)
    with pytest.raises(ValidationError):
        domain.resolve_owner(gateway, "", "not-a-uuid", ORDERS)
    with pytest.raises(ValidationError):
        domain.resolve_owner(orders, "not-a-uuid", "", ORDERS)


def test_nobody_is_unauthenticated():
    with pytest.raises(Unauthenticated):
        domain.resolve_owner(Caller(), "", SESSION, ORDERS)
    with pytest.raises(Unauthenticated):
        domain.resolve_owner(Caller(), USER, "", ORDERS)


# -- quantities and holding rules -----------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, -1, 101, 2**31 - 1, -(2**31)])
def test_add_quantity_range(quantity):
    with pytest.raises(ValidationError):
        domain.validate_add_quantity(quantity)


def test_set_quantity_allows_zero():
    assert domain.validate_set_quantity(0) == 0
    assert domain.validate_set_quantity(100) == 100
    for bad in (-1, 101):
        with pytest.raises(ValidationError):
            domain.validate_set_quantity(bad)


def test_check_can_hold():
    p = product(stock=3)
    assert domain.check_can_hold(p, p.id, 3, "USD") is p
    with pytest.raises(Conflict) as info:
        domain.check_can_hold(p, p.id, 4, "USD")
    assert info.value.code == "INSUFFICIENT_STOCK" and info.value.details["productIds"] == [p.id]
    with pytest.raises(NotFound) as missing:
        domain.check_can_hold(None, p.id, 1, "USD")
    assert missing.value.code == "PRODUCT_NOT_FOUND"
    with pytest.raises(NotFound):
        domain.check_can_hold(product(active=False), p.id, 1, "USD")
    with pytest.raises(Conflict) as currency:
        domain.check_can_hold(product(currency="EUR"), p.id, 1, "USD")
    assert currency.value.code == "CURRENCY_MISMATCH"


def test_add_refusal_names_the_right_rule():
    p = product(stock=500)
    assert isinstance(domain.add_refusal(95, 10, p), ValidationError)
    assert domain.add_refusal(5, 10, product(stock=12)).code == "INSUFFICIENT_STOCK"


def test_line_cap():
    assert domain.line_cap(product(stock=7)) == 7
    assert domain.line_cap(product(stock=1000)) == 100
    assert domain.line_cap(product(stock=-3)) == 0


# -- pricing --------------------------------------------------------------------------------------


def test_price_cart_uses_current_prices_and_skips_unavailable_lines():
    a, b, c, d = (
        product(price=250, stock=10),
        product(price=1999, stock=1),
        product(price=500, active=False),
        product(price=700, currency="EUR"),
    )
    missing = str(uuid.uuid4())
    lines = [Line(a.id, 4), Line(b.id, 2), Line(c.id, 1), Line(d.id, 1), Line(missing, 3)]
    cart = domain.price_cart("cart-1", lines, {p.id: p for p in (a, b, c, d)}, "usd")
    assert [i.available for i in cart.items] == [True, False, False, False, False]
    assert [i.line_total_cents for i in cart.items] == [1000, 3998, 500, 700, 0]
    assert cart.items[4].sku == "" and cart.items[4].unit_price_cents == 0
    assert cart.subtotal_cents == 1000 and cart.item_count == 4 and cart.currency == "USD"
    assert [i.product_id for i in cart.items] == [line.product_id for line in lines]


def test_price_empty_cart():
    cart = domain.price_cart("cart-1", [], {}, "USD")
    assert cart.items == [] and cart.subtotal_cents == 0 and cart.item_count == 0


# -- merge ----------------------------------------------------------------------------------------


def test_merged_quantity_adds_and_caps():
    assert domain.merged_quantity(0, 3, product(stock=10), "USD") == 3
    assert domain.merged_quantity(2, 3, product(stock=10), "USD") == 5
    assert domain.merged_quantity(8, 5, product(stock=10), "USD") == 10  # capped by stock
    assert domain.merged_quantity(60, 60, product(stock=1000), "USD") == 100  # capped by 100
    assert domain.merged_quantity(9, 5, product(stock=4), "USD") == 9  # the user's line is never lowered
    assert domain.merged_quantity(0, 5, product(stock=0), "USD") is None  # nothing to add
    assert domain.merged_quantity(0, 5, None, "USD") is None  # no longer sold: dropped
    assert domain.merged_quantity(2, 5, product(active=False), "USD") == 2


def test_guest_cart_cutoff():
    now = datetime(2026, 1, 31, tzinfo=UTC)
    assert domain.guest_cart_cutoff(now, 30) == now - timedelta(days=30)


def test_room_for_new_line():
    domain.check_room_for_new_line(99)
    with pytest.raises(Conflict) as info:
        domain.check_room_for_new_line(100)
    assert info.value.code == "CART_FULL"
    with pytest.raises(Conflict):
        domain.check_room_for_new_line(3, max_lines=3)


def test_request_ids_and_fingerprints():
    # AddCartItem's key follows the one Idempotency-Key rule (shop.lib.idempotency): 1..128
    # printable ASCII characters; an empty request_id means no key.
    assert clean_key("" or None, field_name="requestId") is None
    assert clean_key("k" * 128, field_name="requestId") == "k" * 128
    for bad in ("k" * 129, "line\nbreak"):
        with pytest.raises(ValidationError) as caught:
            clean_key(bad, field_name="requestId")
        assert list(caught.value.fields) == ["requestId"]
    a = domain.add_fingerprint(USER, 2)
    assert a == domain.add_fingerprint(USER, 2) != domain.add_fingerprint(USER, 3) != domain.add_fingerprint(OTHER, 2)
    check_replay(a, a)
    with pytest.raises(Conflict) as info:
        check_replay(a, domain.add_fingerprint(USER, 3))
    assert info.value.code == "IDEMPOTENCY_KEY_REUSED"
    now = datetime(2026, 1, 31, tzinfo=UTC)
    assert domain.request_cutoff(now, 48) == now - timedelta(hours=48)


# -- checkouts ------------------------------------------------------------------------------------


def test_checkout_ids_are_1_to_64_printable_characters():
    assert domain.validate_checkout_id("k" * 64) == "k" * 64
    for bad in ("", "k" * 65, "a\nb", "\x00"):
        with pytest.raises(ValidationError) as info:
            domain.validate_checkout_id(bad)
        assert "checkoutId" in info.value.fields


def test_a_checkout_id_belongs_to_one_cart():
    cart = Owner(user_id=USER).cart_id
    domain.check_same_checkout_owner(cart, cart)
    domain.check_same_checkout_owner(None, cart)  # recorded by RestoreCart without an owner
    with pytest.raises(Conflict) as info:
        domain.check_same_checkout_owner(Owner(user_id=OTHER).cart_id, cart)
    assert info.value.code == "IDEMPOTENCY_KEY_REUSED"


def test_restored_lines_add_cap_at_100_and_drop_what_does_not_fit():
    a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
    taken = [Line(a, 3), Line(b, 60), Line(c, 1), Line(d, 1)]
    existing = {b: 70, "x": 1}
    # b: 70 + 60 capped at 100; a is the third line; c would be the fourth: dropped, and so is d
    assert domain.restored_lines(existing, taken, max_lines=3) == [Line(a, 3), Line(b, 100)]
    assert domain.restored_lines({}, taken) == taken
    assert domain.restored_lines({a: 100}, [Line(a, 5)]) == []  # already full: nothing to set
