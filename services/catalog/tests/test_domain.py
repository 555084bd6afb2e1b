"""Unit tests of the catalog's pure rules (no database, no gRPC)."""

from __future__ import annotations

import hashlib

import pytest

from services.catalog import domain
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
    out = domain.validate_product(GOOD, creating=True)
    assert out["name"] == "Lamp" and out["brand"] is None and out["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price_cents": 0}, "priceCents"),
        ({"price_cents": domain.MAX_PRICE_CENTS + 1}, "priceCents"),
        ({"compare_at_price_cents": -1}, "compareAtPriceCents"),
        ({"currency": "Eur"}, "currency"),
        ({"stock": -1}, "stock"),
        ({"stock": domain.MAX_STOCK + 1}, "stock"),
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
        domain.validate_product({**GOOD, **change}, creating=True)
    assert field in fields_of(exc)


def test_missing_required_fields_on_create_only():
    with pytest.raises(ValidationError) as exc:
        domain.validate_product({"name": "x"}, creating=True)
    assert {"sku", "priceCents", "currency", "categorySlug"} <= set(fields_of(exc))
    assert domain.validate_product({"name": "x"}, creating=False) == {"name": "x"}


def test_compare_at_price_must_exceed_price():
    domain.check_prices(100, None)
    domain.check_prices(100, 101)
    for compare_at in (100, 99):
        with pytest.raises(ValidationError):
            domain.check_prices(100, compare_at)


def test_visibility_and_management():
    assert domain.can_see("ACTIVE", None, None, None)
    assert domain.can_see("DRAFT", "s1", "s1", "SELLER") and domain.can_see("DRAFT", "s1", "a", "ADMIN")
    assert not domain.can_see("DRAFT", "s1", "s2", "SELLER") and not domain.can_see("DRAFT", "s1", None, None)
    assert not domain.can_see("ARCHIVED", "s1", "a", "ADMIN")
    assert domain.can_manage(None, "a", "ADMIN") and domain.can_manage("s1", "s1", "SELLER")
    assert not domain.can_manage("s1", "s2", "SELLER") and not domain.can_manage("s1", "s1", "CUSTOMER")


def test_merge_lines_sorts_and_merges():
    a, b = "bbbbbbbb-0000-4000-8000-000000000000", "aaaaaaaa-0000-4000-8000-000000000000"
    assert domain.merge_lines([(a, 1), (b, 2), (a.upper(), 3)]) == [(b, 2), (a, 4)]
    with pytest.raises(ValidationError):
        domain.merge_lines([])
    with pytest.raises(ValidationError):
        domain.merge_lines([(a, domain.MAX_LINE_QUANTITY), (a, 1)])


def test_categories_roll_up():
    parents = {"a": None, "b": "a", "c": "b", "d": None}
    assert domain.descendants("a", parents) == {"a", "b", "c"}
    assert domain.rolled_up_counts({"b": 2, "c": 1, "d": 4}, parents) == {"a": 3, "b": 3, "c": 1, "d": 4}
    with pytest.raises(ValidationError):
        domain.validate_category("x", "X", "x")


def test_a_category_slug_is_taken_as_sent_and_its_name_is_one_line():
    assert domain.validate_category("lamps", " Lamps ", "") == ("lamps", "Lamps", None)
    assert domain.validate_category("desk-lamps", "Desk lamps", "lamps") == ("desk-lamps", "Desk lamps", "lamps")
    for slug, name, parent, field in (
        (" lamps", "Lamps", "", "slug"),
        ("lamps\n", "Lamps", "", "slug"),
        ("lamps", "La\x1emps", "", "name"),
        ("lamps", "La\tmps", "", "name"),
        ("lamps", "Lamps", "lamps", "parentSlug"),
    ):
        with pytest.raises(ValidationError) as exc:
            domain.validate_category(slug, name, parent)
        assert list(fields_of(exc)) == [field], (slug, name, parent)


def test_text_is_measured_as_sent_like_the_documented_max_length():
    assert domain.validate_category("lamps", " " + "L" * 99, "")[1] == "L" * 99
    for name in (" " + "L" * 100, "L" * 100 + "\n"):
        with pytest.raises(ValidationError) as exc:
            domain.validate_category("lamps", name, "")
        assert fields_of(exc) == {"name": [f"must be at most {domain.CATEGORY_NAME_MAX} characters"]}


def test_a_stock_adjustment_reason_is_one_line():
    assert domain.validate_stock_adjustment(3, " Delivery ") == "Delivery"
    for reason in ("two\nlines", "bell\x07", "nul\x00"):
        with pytest.raises(ValidationError) as exc:
            domain.validate_stock_adjustment(3, reason)
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
        return domain.product_query(**{**base, **kw})

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
        domain.check_visible(None, "u", "CUSTOMER")
    with pytest.raises(NotFound):  # someone else's draft is invisible, not forbidden
        domain.check_manageable(product_row(domain.DRAFT), "seller-2", "SELLER")
    with pytest.raises(PermissionDenied):  # visible but not owned
        domain.check_manageable(product_row(domain.ACTIVE), "seller-2", "SELLER")
    domain.check_manageable(product_row(domain.DRAFT), "seller-1", "SELLER")
    domain.check_manageable(product_row(domain.ACTIVE), None, "ADMIN")
    assert domain.already_archived(product_row(domain.ARCHIVED), "seller-1", "SELLER")
    assert not domain.already_archived(product_row(domain.ACTIVE), "seller-1", "SELLER")
    with pytest.raises(NotFound):  # an archived product is gone for anyone who could not archive it
        domain.already_archived(product_row(domain.ARCHIVED), "seller-2", "SELLER")


# -- the reservation protocol ----------------------------------------------------------------------


def test_reservation_steps():
    from datetime import UTC, datetime, timedelta

    from shop.lib.errors import Conflict

    assert domain.renew_step(domain.RESERVED, renew=False) == domain.NOTHING
    assert domain.renew_step(domain.RESERVED, renew=True) == domain.Step(to=domain.RESERVED)
    assert domain.renew_step(domain.RELEASED, renew=True) == domain.Step(retake=True, to=domain.RESERVED)
    assert domain.renew_step(domain.COMMITTED, renew=True) == domain.NOTHING
    assert domain.commit_step(domain.RELEASED) == domain.Step(retake=True, to=domain.COMMITTED)
    assert domain.commit_step(domain.RESTOCKED) == domain.NOTHING
    now = datetime.now(UTC)
    assert domain.release_step(domain.RESERVED, now) == domain.Step(give_back=True, to=domain.RELEASED)
    assert domain.release_step(domain.RELEASED, now) == domain.NOTHING
    assert domain.release_step(domain.RESERVED, now, expired_before=now - timedelta(seconds=1)) is None
    assert domain.release_step(domain.COMMITTED, now, expired_before=now) is None
    with pytest.raises(Conflict) as committed:
        domain.release_step(domain.COMMITTED, now)
    assert committed.value.code == "RESERVATION_COMMITTED"
    assert domain.restock_step(domain.COMMITTED) == domain.Step(give_back=True, to=domain.RESTOCKED)
    for status, code in ((domain.RESERVED, "RESERVATION_NOT_COMMITTED"), (domain.RELEASED, "RESERVATION_RELEASED")):
        with pytest.raises(Conflict) as refused:
            domain.restock_step(status)
        assert refused.value.code == code


def test_shortfall_names_unavailable_products_first_else_the_short_ones():
    row = type("Row", (), {})

    def found(stock, status=domain.ACTIVE):
        r = row()
        r.stock, r.status = stock, status
        return r

    lines = [("a", 2), ("b", 5), ("c", 1)]
    short = domain.shortfall(lines, {"a": found(5), "b": found(3), "c": found(1)})
    assert (short.code, short.details) == ("INSUFFICIENT_STOCK", {"productIds": ["a", "b"]})
    gone = domain.shortfall(lines, {"a": found(5), "b": found(3, domain.DRAFT)})
    assert (gone.code, gone.details) == ("PRODUCT_UNAVAILABLE", {"productIds": ["b", "c"]})
