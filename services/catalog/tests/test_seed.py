"""The demo catalog: at least 20 ACTIVE products in at least 4 categories, loaded idempotently on
PostgreSQL (a fresh database, migrated like production) and on SQLite (make run)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.catalog.domain import inputs
from services.catalog.domain import products as product_rules
from services.catalog.models import Category, Product
from services.catalog.seed import CATEGORIES, PRODUCTS, seed_demo_data
from services.catalog.server import MIGRATIONS_DIR
from shop.lib.db import Database
from shop.lib.migrations import upgrade_async


async def check_seed(url: str) -> None:
    await upgrade_async(MIGRATIONS_DIR, url)
    db = Database(url)
    try:
        first, second = await seed_demo_data(db), await seed_demo_data(db)
        assert first == len(PRODUCTS) >= 20 and second == 0
        async with db.transaction() as session:
            products = (await session.execute(select(Product))).scalars().all()
            categories = (await session.execute(select(Category))).scalars().all()
            skus = (await session.execute(select(func.count(func.distinct(Product.sku))))).scalar_one()
        assert len(products) == skus == len(PRODUCTS)
        assert len(categories) == len(CATEGORIES)
        assert all(p.status == product_rules.ACTIVE for p in products)
        assert len({p.category_slug for p in products}) >= 4
        assert any(c.parent_slug for c in categories)
        for product in products:
            assert 500 <= product.price_cents <= 50000
            assert product.compare_at_price_cents is None or product.compare_at_price_cents > product.price_cents
            assert product.brand and product.stock > 0 and len(product.description) > 40
            assert product.images and all(inputs.valid_image_url(u) for u in product.images)
            assert product.images[0].startswith("https://images.shop.example/")
    finally:
        await db.dispose()


async def test_seed_twice_on_postgresql(suite):
    await check_seed(suite.databases.create("catalogseed"))


async def test_seed_twice_on_sqlite(tmp_path):
    await check_seed(f"sqlite:///{tmp_path}/catalog.db")


async def test_seeded_server_serves_the_demo_catalog(suite, tmp_path):
    """SHOP_SEED_DEMO_DATA=true: the server seeds at start; search finds the demo products."""
    from services.catalog.server import build_server
    from shop.catalog.v1 import catalog_pb2
    from shop.lib.clients import ServiceClients
    from shop.lib.settings import BaseShopSettings
    from tests.harness import identity_settings

    server = build_server(
        suite.service_settings(
            "catalog", grpc_address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path}/seeded.db", seed_demo_data=True
        )
    )
    await server.start()
    clients = ServiceClients(
        BaseShopSettings(**{**suite.common(), **identity_settings("gateway"), "catalog_target": server.address}),
        "gateway",
    )
    try:
        response = await clients.catalog.ListProducts(catalog_pb2.ListProductsRequest(page_size=100))
        assert response.total_size == len(PRODUCTS)
        found = await clients.catalog.ListProducts(catalog_pb2.ListProductsRequest(query="HEADPHONES"))
        assert [p.sku for p in found.products] == ["AUD-NC700"]
        # keyset pagination on SQLite too: every sort (and a search) yields each product once
        for sort in range(1, 7):
            for query in ("", "with"):
                seen, token = [], ""
                while True:
                    page = await clients.catalog.ListProducts(
                        catalog_pb2.ListProductsRequest(
                            page_size=4, page_token=token, sort=catalog_pb2.ProductSort.ValueType(sort), query=query
                        )
                    )
                    seen += [p.id for p in page.products]
                    token = page.next_page_token
                    if not token:
                        break
                assert len(seen) == len(set(seen)) == page.total_size > 0, (sort, query)
        cats = await clients.catalog.ListCategories(catalog_pb2.ListCategoriesRequest())
        assert {c.slug: c.product_count for c in cats.categories}["electronics"] == sum(
            1 for p in PRODUCTS if p[5] in ("audio", "computer-accessories", "electronics")
        )
    finally:
        await clients.close()
        await server.stop(grace=0.5)


@pytest.mark.parametrize("sku", [p[0] for p in PRODUCTS])
def test_seed_rows_pass_the_product_rules(sku):
    row = next(p for p in PRODUCTS if p[0] == sku)
    fields = inputs.validate_product(
        {
            "sku": row[0],
            "name": row[1],
            "description": row[2],
            "price_cents": row[3],
            "compare_at_price_cents": row[4],
            "currency": "USD",
            "category_slug": row[5],
            "brand": row[6],
            "images": [],
            "stock": row[7],
            "status": "ACTIVE",
        },
        creating=True,
    )
    inputs.check_prices(fields["price_cents"], fields["compare_at_price_cents"])
    assert row[5] in {c[0] for c in CATEGORIES}
