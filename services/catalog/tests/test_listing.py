"""The product listing (repository/listing.py statements, Products.list_products) on both databases with
the demo catalog: filters, every sort, search, category roll-up, keyset pages and totals, and the
statements built and compiled once per shape."""

from __future__ import annotations

import pytest

from services.catalog.domain import listing as listing_rules
from services.catalog.products import Products
from services.catalog.repository import listing
from services.catalog.seed import PRODUCTS, seed_demo_data
from services.catalog.server import MIGRATIONS_DIR
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async
from shop.lib.pagination import PageTokens


@pytest.fixture(params=["postgresql", "sqlite"])
async def repo(request, databases, tmp_path):
    url = databases.create("listing") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'listing.db'}"
    await upgrade_async(MIGRATIONS_DIR, url)
    db = Database(url)
    await seed_demo_data(db)
    yield Products(db, PageTokens("listing-test-secret"))
    await db.dispose()


def query(**fields):
    values = {
        "query": "",
        "category_slug": "",
        "brand": "",
        "min_price_cents": None,
        "max_price_cents": None,
        "in_stock_only": False,
        "sort": None,
        **fields,
    }
    return listing_rules.product_query(**values)


async def every_page(repo, q, size):
    items, after, totals = [], None, set()
    while True:
        page = await repo.list_products(q, size, after)
        items += page.items
        totals.add(page.total)
        if not page.has_more:
            return items, totals
        after = (repo.parse_sort_key(q.sort, page.last_key), page.last_id)


@pytest.mark.parametrize("sort", ["newest", "price", "-price", "rating", "name"])
async def test_pages_cover_everything_once_in_order(repo, sort):
    items, totals = await every_page(repo, query(sort=sort), 4)
    assert totals == {len(PRODUCTS)}
    assert len({item.id for item in items}) == len(items) == len(PRODUCTS)
    if sort in ("price", "-price"):
        prices = [item.price_cents for item in items]
        assert prices == sorted(prices, reverse=sort == "-price")
    if sort == "name":
        names = [item.name.lower() for item in items]
        assert names == sorted(names)


async def test_filters_combine_and_count(repo):
    audio = [p for p in PRODUCTS if p[5] == "audio"]
    items, totals = await every_page(repo, query(category_slug="audio"), 2)
    assert totals == {len(audio)} and len(items) == len(audio)
    electronics, _ = await every_page(repo, query(category_slug="electronics"), 50)
    assert {i.id for i in items} <= {i.id for i in electronics}  # subcategories roll up
    cheap, _ = await every_page(repo, query(min_price_cents=1000, max_price_cents=5000, in_stock_only=True), 50)
    assert cheap and all(1000 <= i.price_cents <= 5000 and i.stock > 0 for i in cheap)
    aurora, _ = await every_page(repo, query(brand="aUrOrA"), 50)
    assert aurora and all(i.brand == "Aurora" for i in aurora)
    none = await repo.list_products(query(brand="no-such-brand"), 5, None)
    assert (none.items, none.total, none.has_more) == ([], 0, False)


async def test_search_ranks_and_pages(repo):
    q = query(query="headphones")
    assert q.sort == "relevance"
    items, totals = await every_page(repo, q, 1)
    assert items and totals == {len(items)}
    assert all("headphone" in (i.name + i.description).lower() for i in items)
    # LIKE metacharacters are searched for literally, never as wildcards
    assert (await repo.list_products(query(query="%"), 5, None)).total == 0
    assert (await repo.list_products(query(query="_"), 5, None)).total == 0


async def test_statements_are_built_once_per_shape(repo):
    listing.page_statement.cache_clear()
    for word in ("lamp", "coffee", "headphones"):
        await repo.list_products(query(query=word), 5, None)
    info = listing.page_statement.cache_info()
    assert info.misses == 1 and info.hits == 2
