"""Unit tests of the catalog's pure rules (no database, no gRPC)."""

from __future__ import annotations

import hashlib

import pytest

from services.catalog.domain import inputs
from services.catalog.domain import listing as listing_rules
from services.catalog.domain import products as product_rules
from services.catalog.domain import stock as stock_rules
from services.catalog.servicer import request_key
from shop.lib.context import Caller
from shop.lib.errors import ValidationError
from shop.lib.idempotency import scoped_key

GOOD = {
    "sku": "ABC-1",
    "name": " Lamp ",
    "description": "",
    "price_cents": 100,
    "compare_at_price_cents": None,
    "currency": "EUR",
    "category_slug": "home",
    "brand": "  ",
    "images": ["https://x.example/a.png"],
    "stock": 0,
    "status": None,
}


def fields_of(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.fields


def test_validate_product_normalises():
    out = inputs.validate_product(GOOD, creating=True)
    assert out["name"] == "Lamp" and out["brand"] is None and out["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price_cents": 0}, "priceCents"),
        ({"price_cents": inputs.MAX_PRICE_CENTS + 1}, "priceCents"),
        ({"compare_at_price_cents": -1}, "compareAtPriceCents"),
        ({"currency": "Eur"}, "currency"),
        ({"stock": -1}, "stock"),
        ({"stock": inputs.MAX_STOCK + 1}, "stock"),
        ({"sku": "a b"}, "sku"),
        ({"name": ""}, "name"),
        ({"images": ["ftp://x.example/a"]}, "images"),
        ({"images": ["https://"]}, "images"),
        ({"images": ["https://x.example/a b"]}, "images"),
        ({"status": "ARCHIVED"}, "status"),
        ({"category_slug": " "}, "categorySlug"),
        ({"currency": "USD\n"}, "currency"),
    ],
)
def test_validate_product_rejects(change, field):
    with pytest.raises(ValidationError) as exc:
        inputs.validate_product({**GOOD, **change}, creating=True)
    assert field in fields_of(exc)


def test_missing_required_fields_on_create_only():
    with pytest.raises(ValidationError) as exc:
        inputs.validate_product({"name": "x"}, creating=True)
    assert {"sku", "priceCents", "currency", "categorySlug"} <= set(fields_of(exc))
    assert inputs.validate_product({"name": "x"}, creating=False) == {"name": "x"}


def test_compare_at_price_must_exceed_price():
    inputs.check_prices(100, None)
    inputs.check_prices(100, 101)
    for compare_at in (100, 99):
        with pytest.raises(ValidationError):
            inputs.check_prices(100, compare_at)


def test_visibility_and_management():
    assert product_rules.can_see("ACTIVE", None, None, None)
    assert product_rules.can_see("DRAFT", "s1", "s1", "SELLER") and product_rules.can_see("DRAFT", "s1", "a", "ADMIN")
    assert not product_rules.can_see("DRAFT", "s1", "s2", "SELLER")
    assert not product_rules.can_see("DRAFT", "s1", None, None)
    assert not product_rules.can_see("ARCHIVED", "s1", "a", "ADMIN")
    assert product_rules.can_manage(None, "a", "ADMIN") and product_rules.can_manage("s1", "s1", "SELLER")
    assert not product_rules.can_manage("s1", "s2", "SELLER") and not product_rules.can_manage("s1", "s1", "CUSTOMER")


def test_merge_lines_sorts_and_merges():
    a, b = "bbbbbbbb-0000-4000-8000-000000000000", "aaaaaaaa-0000-4000-8000-000000000000"
    assert stock_rules.merge_lines([(a, 1), (b, 2), (a.upper(), 3)]) == [(b, 2), (a, 4)]
    with pytest.raises(ValidationError):
        stock_rules.merge_lines([])
    with pytest.raises(ValidationError):
        stock_rules.merge_lines([(a, stock_rules.MAX_LINE_QUANTITY), (a, 1)])


def test_categories_roll_up():
    parents = {"a": None, "b": "a", "c": "b", "d": None}
    assert listing_rules.descendants("a", parents) == {"a", "b", "c"}
    assert listing_rules.rolled_up_counts({"b": 2, "c": 1, "d": 4}, parents) == {"a": 3, "b": 3, "c": 1, "d": 4}
    with pytest.raises(ValidationError):
        inputs.validate_category("x", "X", "x")


def test_a_category_slug_is_taken_as_sent_and_its_name_is_one_line():
    assert inputs.validate_category("lamps", " Lamps ", "") == ("lamps", "Lamps", None)
    assert inputs.validate_category("desk-lamps", "Desk lamps", "lamps") == ("desk-lamps", "Desk lamps", "lamps")
    for slug, name, parent, field in (
        (" lamps", "Lamps", "", "slug"),
        ("lamps\n", "Lamps", "", "slug"),
        ("lamps", "La\x1emps", "", "name"),
        ("lamps", "La\tmps", "", "name"),
        ("lamps", "Lamps", "lamps", "parentSlug"),
    ):
        with pytest.raises(ValidationError) as exc:
            inputs.validate_category(slug, name, parent)
        assert list(fields_of(exc)) == [field], (slug, name, parent)


def test_text_is_measured_as_sent_like_the_documented_max_length():
    assert inputs.validate_category("lamps", " " + "L" * 99, "")[1] == "L" * 99
    for name in (" " + "L" * 100, "L" * 100 + "\n"):
        with pytest.raises(ValidationError) as exc:
            inputs.validate_category("lamps", name, "")
        assert fields_of(exc) == {"name": [f"must be at most {inputs.CATEGORY_NAME_MAX} characters"]}


def test_a_stock_adjustment_reason_is_one_line():
    assert stock_rules.validate_stock_adjustment(3, " Delivery ") == "Delivery"
    for reason in ("two\nlines", "bell\x07", "nul\x00"):
        with pytest.raises(ValidationError) as exc:
            stock_rules.validate_stock_adjustment(3, reason)
        assert fields_of(exc) == {"reason": ["must not contain control characters"]}


def test_product_query_defaults():
    def q(**kw):
        base = {
            "query": "",
            "category_slug": "",
            "brand": "",
            "min_price_cents": None,
            "max_price_cents": None,
            "in_stock_only": False,
            "sort": None,
        }
        return listing_rules.product_query(**{**base, **kw})

    assert q().sort == "newest" and q(query=" lamp  shade ").sort == "relevance"
    assert q(query="lamp  shade").query == "lamp shade"
    assert q(sort="relevance").sort == "newest"
    with pytest.raises(ValidationError):
        q(sort="bogus")
    with pytest.raises(ValidationError):
        q(min_price_cents=5, max_price_cents=1)


def test_scoped_request_ids_differ_per_user():
    u1, u2 = Caller(user_id="u1", role="SELLER"), Caller(user_id="u2", role="SELLER")
    assert request_key(u1, "k") != request_key(u2, "k")
    assert request_key(u1, "") is None
    # the stored form is unchanged (64 hex characters of the same hash): keys already stored match
    assert request_key(u1, "k") == hashlib.sha256(b"u1\nk").hexdigest()[:64] == scoped_key("u1", "k")


def test_request_ids_follow_the_one_idempotency_key_rule():
    # shop.lib.idempotency: 1..128 printable ASCII (was 1..64 characters without NUL)
    seller = Caller(user_id="u1", role="SELLER")
    assert len(request_key(seller, "k" * 128) or "") == 64
    for bad in ("k" * 129, "a\x00b", "clé"):
        with pytest.raises(ValidationError) as caught:
            request_key(seller, bad)
        assert list(caught.value.fields) == ["requestId"]


# -- who may see and change a product (the use cases ask these before writing) --------------------


def product_row(status: str, seller: str | None = "seller-1"):
    return type("Row", (), {"status": status, "seller_id": seller})()


def test_visibility_and_ownership():
    from shop.lib.errors import NotFound, PermissionDenied

    with pytest.raises(NotFound):
        product_rules.check_visible(None, "u", "CUSTOMER")
    with pytest.raises(NotFound):  # someone else's draft is invisible, not forbidden
        product_rules.check_manageable(product_row(product_rules.DRAFT), "seller-2", "SELLER")
    with pytest.raises(PermissionDenied):  # visible but not owned
        product_rules.check_manageable(product_row(product_rules.ACTIVE), "seller-2", "SELLER")
    product_rules.check_manageable(product_row(product_rules.DRAFT), "seller-1", "SELLER")
    product_rules.check_manageable(product_row(product_rules.ACTIVE), None, "ADMIN")
    assert product_rules.already_archived(product_row(product_rules.ARCHIVED), "seller-1", "SELLER")
    assert not product_rules.already_archived(product_row(product_rules.ACTIVE), "seller-1", "SELLER")
    with pytest.raises(NotFound):  # an archived product is gone for anyone who could not archive it
        product_rules.already_archived(product_row(product_rules.ARCHIVED), "seller-2", "SELLER")


# -- the reservation protocol ----------------------------------------------------------------------


def test_reservation_steps():
    from datetime import UTC, datetime, timedelta

    from shop.lib.errors import Conflict

    assert stock_rules.renew_step(stock_rules.RESERVED, renew=False) == stock_rules.NOTHING
    assert stock_rules.renew_step(stock_rules.RESERVED, renew=True) == stock_rules.Step(to=stock_rules.RESERVED)
    assert stock_rules.renew_step(stock_rules.RELEASED, renew=True) == stock_rules.Step(
        retake=True, to=stock_rules.RESERVED
    )
    assert stock_rules.renew_step(stock_rules.COMMITTED, renew=True) == stock_rules.NOTHING
    assert stock_rules.commit_step(stock_rules.RELEASED) == stock_rules.Step(retake=True, to=stock_rules.COMMITTED)
    assert stock_rules.commit_step(stock_rules.RESTOCKED) == stock_rules.NOTHING
    now = datetime.now(UTC)
    assert stock_rules.release_step(stock_rules.RESERVED, now) == stock_rules.Step(
        give_back=True, to=stock_rules.RELEASED
    )
    assert stock_rules.release_step(stock_rules.RELEASED, now) == stock_rules.NOTHING
    assert stock_rules.release_step(stock_rules.RESERVED, now, expired_before=now - timedelta(seconds=1)) is None
    assert stock_rules.release_step(stock_rules.COMMITTED, now, expired_before=now) is None
    with pytest.raises(Conflict) as committed:
        stock_rules.release_step(stock_rules.COMMITTED, now)
    assert committed.value.code == "RESERVATION_COMMITTED"
    assert stock_rules.restock_step(stock_rules.COMMITTED) == stock_rules.Step(give_back=True, to=stock_rules.RESTOCKED)
    for status, code in (
        (stock_rules.RESERVED, "RESERVATION_NOT_COMMITTED"),
        (stock_rules.RELEASED, "RESERVATION_RELEASED"),
    ):
        with pytest.raises(Conflict) as refused:
            stock_rules.restock_step(status)
        assert refused.value.code == code


def test_shortfall_names_unavailable_products_first_else_the_short_ones():
    row = type("Row", (), {})

    def found(stock, status=product_rules.ACTIVE):
        r = row()
        r.stock, r.status = stock, status
        return r

    lines = [("a", 2), ("b", 5), ("c", 1)]
    short = stock_rules.shortfall(lines, {"a": found(5), "b": found(3), "c": found(1)})
    assert (short.code, short.details) == ("INSUFFICIENT_STOCK", {"productIds": ["a", "b"]})
    gone = stock_rules.shortfall(lines, {"a": found(5), "b": found(3, product_rules.DRAFT)})
    assert (gone.code, gone.details) == ("PRODUCT_UNAVAILABLE", {"productIds": ["b", "c"]})
