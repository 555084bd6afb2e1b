"""Use cases of wishlists: ListWishlistItems (one lean read, no transaction), AddWishlistItem and
RemoveWishlistItem (one transaction each, opened and committed here). Queries are
repository/reviews.py's; who may see a product is domain/products.py's."""

from __future__ import annotations

from typing import Any

from services.catalog.domain import products as product_rules
from services.catalog.repository import products as product_queries
from services.catalog.repository import reviews as queries
from shop.lib.db import Database, utcnow


class Wishlist:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, user_id: str, role: str | None) -> list[Any]:
        """The products the user may still see (archived ones drop out), newest first, each row
        with its `added_at`."""
        rows = await self.db.read_all(queries.WISHLIST, user_id=user_id)
        return [row for row in rows if product_rules.can_see(row.status, row.seller_id, user_id, role)]

    async def add(self, user_id: str, role: str | None, product_id: str) -> None:
        """Idempotent; an unknown or invisible product is PRODUCT_NOT_FOUND; WISHLIST_FULL at the limit."""
        async with self.db.transaction() as session:
            product_rules.check_visible(await product_queries.product(session, product_id), user_id, role)
            if await queries.wishlisted(session, user_id, product_id):
                return
            product_rules.check_wishlist_room(await queries.wishlist_size(session, user_id))
            await queries.add_wishlist_item(session, user_id, product_id, utcnow())

    async def remove(self, user_id: str, product_id: str) -> None:
        """Idempotent."""
        async with self.db.transaction() as session:
            await queries.remove_wishlist_item(session, user_id, product_id)
