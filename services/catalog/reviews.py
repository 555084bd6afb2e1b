"""Use cases of reviews and purchases: ListReviews (lean reads, no transaction), CreateReview and
RecordPurchases (one transaction each, opened and committed here). Queries are
repository/reviews.py's; who may see a product is domain/products.py's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from services.catalog.domain import products as product_rules
from services.catalog.models import Review
from services.catalog.repository import products as product_queries
from services.catalog.repository import reviews as queries
from shop.lib.db import Database, new_id, utcnow
from shop.lib.errors import AlreadyExists
from shop.lib.pagination import PageTokens, aware_datetime, fingerprint


def review_exists() -> AlreadyExists:
    return AlreadyExists("You have already reviewed this product.", code="REVIEW_EXISTS")


class Reviews:
    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self.db = db
        self.tokens = tokens

    async def list_page(
        self, product_id: str, user_id: str | None, role: str | None, size: int, page_token: str
    ) -> tuple[list[Any], str, int]:
        """A visible product's reviews, newest first: (rows, next page token, total)."""
        query_fp = fingerprint(kind="reviews", product=product_id)
        after = self.tokens.decode_after(page_token, query_fp, parse_key=aware_datetime, key_field="t")
        product_rules.check_visible(await self.db.read_one(product_queries.GET_PRODUCT, id=product_id), user_id, role)
        total = (await self.db.read_one(queries.REVIEW_COUNT, product_id=product_id)).total
        if after is None:
            rows = await self.db.read_all(queries.REVIEWS, product_id=product_id, limit=size + 1)
        else:
            rows = await self.db.read_all(
                queries.REVIEWS_AFTER, product_id=product_id, limit=size + 1, last_time=after[0], last_id=after[1]
            )
        if len(rows) <= size:
            return rows, "", total
        last = rows[size - 1]
        return rows[:size], self.tokens.encode_after(last.created_at, last.id, query_fp, key_field="t"), total

    async def create_review(
        self, product_id: str, user_id: str, role: str | None, rating: int, title: str, body: str
    ) -> Review:
        """One review per user and product (REVIEW_EXISTS); `verified_purchase` if the user bought
        it. The product's rating is recomputed in the same transaction."""
        try:
            async with self.db.transaction() as session:
                # Lock the product first: concurrent reviews of it queue here, and each one's
                # aggregate below is computed by a later statement that sees the others.
                product_rules.check_visible(
                    await product_queries.product_for_update(session, product_id), user_id, role
                )
                if await queries.reviewed(session, product_id, user_id):
                    raise review_exists()
                review = Review(
                    id=new_id(),
                    product_id=product_id,
                    user_id=user_id,
                    rating=rating,
                    title=title,
                    body=body,
                    verified_purchase=await queries.purchased(session, user_id, product_id),
                    created_at=utcnow(),
                )
                await queries.add_review(session, review)
                await queries.refresh_rating(session, product_id)
            return review
        except IntegrityError:
            raise review_exists() from None

    async def record_purchases(self, order_id: str, user_id: str, product_ids: list[str]) -> None:
        """Idempotent; the user's reviews of those products become `verified_purchase`."""
        if not product_ids:
            return
        async with self.db.transaction() as session:
            await queries.add_purchases(session, order_id, user_id, product_ids, utcnow())
            await queries.verify_reviews(session, user_id, product_ids)
