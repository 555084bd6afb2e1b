"""Review, purchase and wishlist queries: lean reads (`Query` constants, run with
`db.read_one/read_all`) and the writes of reviews.py's and wishlist.py's use cases (functions
taking their ORM session)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, column, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import Product, Purchase, Review, WishlistItem
from services.catalog.repository.listing import PRODUCT_COLUMNS
from shop.lib.db import Query, UTCDateTime

_REVIEW_COLUMNS = [
    Review.id,
    Review.product_id,
    Review.user_id,
    Review.rating,
    Review.title,
    Review.body,
    Review.verified_purchase,
    Review.created_at,
]
_REVIEW_SELECT = "SELECT " + ", ".join(c.name for c in _REVIEW_COLUMNS) + " FROM reviews"  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
_NEWEST_FIRST = " ORDER BY created_at DESC, id DESC LIMIT :limit"
REVIEW_COUNT = Query("SELECT count(*) AS total FROM reviews WHERE product_id = :product_id", [column("total", Integer)])
# A page of a product's reviews, newest first; a later page starts after (last_time, last_id).
REVIEWS = Query(f"{_REVIEW_SELECT} WHERE product_id = :product_id{_NEWEST_FIRST}", _REVIEW_COLUMNS)
REVIEWS_AFTER = Query(
    f"{_REVIEW_SELECT} WHERE product_id = :product_id "
    f"AND (created_at < :last_time OR (created_at = :last_time AND id < :last_id)){_NEWEST_FIRST}",
    _REVIEW_COLUMNS,
    types={"last_time": UTCDateTime()},
)
# A user's wishlist, newest first, each product with when it was added.
WISHLIST = Query(
    "SELECT " + ", ".join(f"p.{c.name}" for c in PRODUCT_COLUMNS) + ", w.created_at AS added_at "  # nosec B608  # SQL from the models' column names, no input
    "FROM wishlist_items w JOIN products p ON p.id = w.product_id WHERE w.user_id = :user_id "
    "ORDER BY w.created_at DESC, p.id",
    [*PRODUCT_COLUMNS, column("added_at", UTCDateTime())],
)


def _insert(session: AsyncSession, table):
    return pg_insert(table) if session.get_bind().dialect.name == "postgresql" else sqlite_insert(table)


# -- purchases -------------------------------------------------------------------------------------


async def add_purchases(
    session: AsyncSession, order_id: str, user_id: str, product_ids: list[str], now: datetime
) -> None:
    """Idempotent: one row per user and product (the first order that bought it)."""
    await session.execute(
        _insert(session, Purchase)
        .values(
            [{"user_id": user_id, "product_id": pid, "order_id": order_id, "created_at": now} for pid in product_ids]
        )
        .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
    )


async def verify_reviews(session: AsyncSession, user_id: str, product_ids: list[str]) -> None:
    await session.execute(
        update(Review)
        .where(Review.user_id == user_id, Review.product_id.in_(product_ids))
        .values(verified_purchase=True)
    )


async def purchased(session: AsyncSession, user_id: str, product_id: str) -> bool:
    return (
        await session.execute(
            select(Purchase.user_id).where(Purchase.user_id == user_id, Purchase.product_id == product_id)
        )
    ).first() is not None


# -- reviews ---------------------------------------------------------------------------------------


async def reviewed(session: AsyncSession, product_id: str, user_id: str) -> bool:
    return (
        await session.execute(select(Review.id).where(Review.product_id == product_id, Review.user_id == user_id))
    ).first() is not None


async def add_review(session: AsyncSession, review: Review) -> None:
    """Inserts now, so the rating recomputed next counts it."""
    session.add(review)
    await session.flush()


async def refresh_rating(session: AsyncSession, product_id: str) -> None:
    """The product's `rating_count` and `rating_average` (2 decimals) from its reviews."""
    await session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(
            rating_count=select(func.count()).where(Review.product_id == product_id).scalar_subquery(),
            rating_average=select(func.coalesce(func.round(func.avg(Review.rating), 2), 0))
            .where(Review.product_id == product_id)
            .scalar_subquery(),
        )
    )


# -- wishlist --------------------------------------------------------------------------------------


async def wishlisted(session: AsyncSession, user_id: str, product_id: str) -> bool:
    return await session.get(WishlistItem, (user_id, product_id)) is not None


async def wishlist_size(session: AsyncSession, user_id: str) -> int:
    return (await session.execute(select(func.count()).where(WishlistItem.user_id == user_id))).scalar_one()


async def add_wishlist_item(session: AsyncSession, user_id: str, product_id: str, now: datetime) -> None:
    await session.execute(
        _insert(session, WishlistItem)
        .values(user_id=user_id, product_id=product_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
    )


async def remove_wishlist_item(session: AsyncSession, user_id: str, product_id: str) -> None:
    await session.execute(
        delete(WishlistItem).where(WishlistItem.user_id == user_id, WishlistItem.product_id == product_id)
    )
