"""Product and category queries: lean reads (`Query` constants, run with `db.read_one/read_all`)
and the writes of products.py's use cases (functions taking their ORM session)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, column, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import Category, Product
from services.catalog.repository.listing import PRODUCT_COLUMNS
from shop.lib.db import Query

_PRODUCT_SELECT = "SELECT " + ", ".join(c.name for c in PRODUCT_COLUMNS) + " FROM products"  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
GET_PRODUCT = Query(f"{_PRODUCT_SELECT} WHERE id = :id", PRODUCT_COLUMNS)
BATCH_GET_PRODUCTS = Query(
    f"{_PRODUCT_SELECT} WHERE id IN :ids",
    PRODUCT_COLUMNS,
    postgres_sql=f"{_PRODUCT_SELECT} WHERE id = ANY(:ids)",
    expanding=("ids",),
)
CATEGORY_COLUMNS = [Category.slug, Category.name, Category.parent_slug]
CATEGORIES = Query("SELECT slug, name, parent_slug FROM categories", CATEGORY_COLUMNS)
# Each category with its own ACTIVE products counted (subcategories are rolled up in the domain).
CATEGORIES_WITH_COUNTS = Query(
    "SELECT c.slug, c.name, c.parent_slug, count(p.id) AS active_count FROM categories c "
    "LEFT JOIN products p ON p.category_slug = c.slug AND p.status = 'ACTIVE' "
    "GROUP BY c.slug, c.name, c.parent_slug",
    [*CATEGORY_COLUMNS, column("active_count", Integer)],
)


# -- inside a write's session ----------------------------------------------------------------------


async def categories(session: AsyncSession) -> dict[str, Any]:
    """Every category (rows with slug, name, parent_slug) by slug."""
    return {row.slug: row for row in (await session.execute(CATEGORIES.core)).all()}


async def category_exists(session: AsyncSession, slug: str) -> bool:
    return await session.get(Category, slug) is not None


def add_category(session: AsyncSession, category: Category) -> None:
    session.add(category)


async def product_for_update(session: AsyncSession, product_id: str) -> Product | None:
    """The product with its row locked until the transaction ends (writers of one product queue)."""
    return (
        await session.execute(select(Product).where(Product.id == product_id).with_for_update())
    ).scalar_one_or_none()


async def product_by_request_id(session: AsyncSession, request_id: str) -> Product | None:
    """The product a CreateProduct with this (scoped) request id made."""
    return (await session.execute(select(Product).where(Product.create_request_id == request_id))).scalar_one_or_none()


async def sku_taken(session: AsyncSession, sku: str) -> bool:
    return (await session.execute(select(Product.id).where(Product.sku == sku))).first() is not None


def add_product(session: AsyncSession, product: Product) -> None:
    session.add(product)


async def product(session: AsyncSession, product_id: str) -> Product | None:
    return await session.get(Product, product_id)


# The product a CreateProduct with this request id made (read again after losing a race for it).
PRODUCT_BY_REQUEST_ID = Query(f"{_PRODUCT_SELECT} WHERE create_request_id = :request_id", PRODUCT_COLUMNS)
