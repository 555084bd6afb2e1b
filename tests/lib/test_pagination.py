from __future__ import annotations

import pytest

from shop.lib.errors import InvalidArgument
from shop.lib.pagination import PageTokens, fingerprint, page_size


def test_page_size_bounds():
    assert page_size(0) == 20
    assert page_size(1) == 1 and page_size(100) == 100
    for bad in (-1, 101, 10_000):
        with pytest.raises(InvalidArgument):
            page_size(bad)


def test_token_round_trip_and_tamper_evidence():
    tokens = PageTokens("secret-one-0123456789abcdef0123456789")
    query = fingerprint(sort="price", q="shoes")
    token = tokens.encode({"k": 1999, "id": "abc"}, query)
    assert tokens.decode(token, query) == {"k": 1999, "id": "abc"}
    assert tokens.decode("", query) is None
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (forged, "not-a-token", token + "x", "%%%"):
        with pytest.raises(InvalidArgument) as caught:
            tokens.decode(bad, query)
        assert caught.value.code == "INVALID_PAGE_TOKEN"
    # a token from another query, or signed with another secret, is refused
    with pytest.raises(InvalidArgument):
        tokens.decode(token, fingerprint(sort="price", q="hats"))
    with pytest.raises(InvalidArgument):
        PageTokens("another-secret-0123456789abcdef0123").decode(token, query)


def test_keyset_positions_round_trip_and_every_bad_token_is_the_one_error():
    from datetime import UTC, datetime

    from shop.lib.pagination import aware_datetime, invalid_page_token

    tokens = PageTokens("secret-one-0123456789abcdef0123456789")
    query = fingerprint(kind="orders", status="PAID")
    at = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    token = tokens.encode_after(at, "row-1", query, key_field="t")
    assert tokens.decode(token, query) == {"t": at.isoformat(), "id": "row-1"}  # the format lists already give out
    assert tokens.decode_after(token, query, parse_key=aware_datetime, key_field="t") == (at, "row-1")
    assert tokens.decode_after("", query) is None
    assert tokens.decode_after(tokens.encode_after(1999, "p", query), query) == (1999, "p")

    error = invalid_page_token()
    assert (error.code, error.fields) == ("INVALID_PAGE_TOKEN", {"pageToken": ["is not valid for this query"]})
    signed_but_wrong = [
        tokens.encode({"t": "yesterday", "id": "x"}, query),  # the key does not parse
        tokens.encode({"t": "2026-03-04T05:06:07", "id": "x"}, query),  # naive timestamp
        tokens.encode({"id": "x"}, query),  # no key
        tokens.encode({"t": at.isoformat(), "id": 7}, query),  # id not a string
    ]
    for bad in [*signed_but_wrong, "garbage"]:
        with pytest.raises(InvalidArgument) as caught:
            tokens.decode_after(bad, query, parse_key=aware_datetime, key_field="t")
        assert caught.value.code == "INVALID_PAGE_TOKEN" and caught.value.fields == error.fields
