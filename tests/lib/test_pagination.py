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
