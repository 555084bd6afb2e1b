"""Use cases of products and categories: the product reads (GetProduct, BatchGetProducts,
ListProducts and search, ListCategories) on the lean path, one statement each where one can do, no
transaction; the writes (CreateProduct, UpdateProduct, DeleteProduct, CreateCategory), each one
transaction that it opens and commits. Rules are domain/'s (inputs, products, listing), queries
repository/products.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.catalog import pages
from services.catalog.domain import inputs
from services.catalog.domain import listing as listing_rules
from services.catalog.domain import products as product_rules
from services.catalog.models import Category, Product
from services.catalog.repository import listing
from services.catalog.repository import products as queries
from shop.lib.db import Database, new_id, utcnow
from shop.lib.errors import AlreadyExists, ValidationError
from shop.lib.idempotency import key_reused
from shop.lib.pagination import PageTokens, fingerprint


@dataclass
class Page:
    items: list[Any]
    last_key: Any
    last_id: str | None
    has_more: bool
    total: int


def sku_taken(sku: str | None = None) -> AlreadyExists:
    if sku is None:
        return AlreadyExists("That SKU is already taken.", code="SKU_TAKEN")
    return AlreadyExists(f"SKU {sku!r} is already taken.", code="SKU_TAKEN")


class Products:
    def __init__(self, db: Database, tokens: PageTokens) -> None:
        self.db = db
        self.tokens = tokens

    # -- reads (lean path) -----------------------------------------------------------------------

    async def get(self, product_id: str, user_id: str | None, role: str | None) -> Any:
        """The product's row if the caller may see it, else PRODUCT_NOT_FOUND."""
        product = await self.db.read_one(queries.GET_PRODUCT, id=product_id)
        product_rules.check_visible(product, user_id, role)
        return product

    async def batch_get(self, product_ids: list[str]) -> list[Any]:
        """The rows of those products that exist, any status, in the order asked."""
        if not product_ids:
            return []
        rows = await self.db.read_all(queries.BATCH_GET_PRODUCTS, ids=product_ids)
        by_id = {row.id: row for row in rows}
        return [by_id[pid] for pid in product_ids if pid in by_id]

    def parse_sort_key(self, sort: str, raw: Any) -> Any:
        return pages.parse_sort_key(sort, raw, postgres=self.db.is_postgres)

    async def list_page(
        self, query: listing_rules.ProductQuery, size: int, page_token: str
    ) -> tuple[list[Any], str, int]:
        """ListProducts: (rows, next page token, total); the token binds the filters and sort."""
        query_fp = fingerprint(kind="products", **query.fingerprint_fields())
        after = self.tokens.decode_after(
            page_token, query_fp, parse_key=lambda raw: self.parse_sort_key(query.sort, raw)
        )
        page = await self.list_products(query, size, after)
        next_token = ""
        if page.has_more and page.last_id is not None:  # has_more means a last row (size >= 1)
            next_token = self.tokens.encode_after(page.last_key, page.last_id, query_fp)
        return page.items, next_token, page.total

    async def list_products(self, query: listing_rules.ProductQuery, size: int, after: tuple[Any, str] | None) -> Page:
        """One page in keyset order (statements in repository/listing.py). The first page carries
        its total in a window count (one round trip); later pages count apart, their keyset
        narrowing the rows."""
        categories: list[str] = []
        if query.category_slug:
            parents = {row.slug: row.parent_slug for row in await self.db.read_all(queries.CATEGORIES)}
            categories = sorted(listing_rules.descendants(query.category_slug, parents))
        shape = listing.shape_of(query, postgres=self.db.is_postgres, after=after is not None)
        values = listing.parameters(query, categories, size, after)
        rows = await self.db.read_statement(listing.page_statement(shape), values)
        if after is None:
            total = rows[0].total_size if rows else 0
        else:
            total = (await self.db.read_statement(listing.count_statement(shape), values))[0].total_size
        has_more = len(rows) > size
        rows = rows[:size]
        last = rows[-1] if rows else None
        return Page(
            items=rows,
            last_key=pages.dump_sort_key(last.sort_key) if last is not None else None,
            last_id=last.id if last is not None else None,
            has_more=has_more,
            total=total,
        )

    async def list_categories(self) -> list[tuple[Any, int]]:
        """Every category by slug with its ACTIVE products counted, subcategories included."""
        rows = await self.db.read_all(queries.CATEGORIES_WITH_COUNTS)
        categories = {row.slug: row for row in rows}
        parents = {row.slug: row.parent_slug for row in rows}
        rolled = listing_rules.rolled_up_counts({row.slug: row.active_count for row in rows}, parents)
        return [(categories[slug], rolled[slug]) for slug in sorted(categories)]

    # -- writes (one transaction each) -----------------------------------------------------------

    async def create_category(self, slug: str, name: str, parent_slug: str | None) -> Category:
        exists = AlreadyExists(f"Category {slug!r} already exists.", code="CATEGORY_EXISTS")
        try:
            async with self.db.transaction() as session:
                if await queries.category_exists(session, slug):
                    raise exists
                if parent_slug is not None and not await queries.category_exists(session, parent_slug):
                    raise ValidationError.single("parentSlug", "no such category")
                category = Category(slug=slug, name=name, parent_slug=parent_slug, created_at=utcnow())
                queries.add_category(session, category)
            return category
        except IntegrityError:
            raise exists from None

    async def create_product(self, fields: dict[str, Any], seller_id: str | None, request_id: str | None) -> Any:
        """`fields` validated by inputs.validate_product. A repeat of `request_id` returns the
        product it made (IDEMPOTENCY_KEY_REUSED with another SKU)."""
        try:
            async with self.db.transaction() as session:
                if request_id is not None:
                    existing = await queries.product_by_request_id(session, request_id)
                    if existing is not None:
                        if existing.sku != fields["sku"]:
                            raise key_reused("This idempotency key was used for another product.")
                        return existing
                if await queries.sku_taken(session, fields["sku"]):
                    raise sku_taken(fields["sku"])
                categories = await queries.categories(session)
                if fields["category_slug"] not in categories:
                    raise ValidationError.single("categorySlug", "no such category")
                product = new_product(fields, seller_id, request_id, categories)
                queries.add_product(session, product)
            return product
        except IntegrityError:
            # Lost a race: the same request id (return its product) or the same SKU.
            if request_id is not None:
                existing = await self.db.read_one(queries.PRODUCT_BY_REQUEST_ID, request_id=request_id)
                if existing is not None:
                    return existing
            raise sku_taken(fields["sku"]) from None

    async def update_product(
        self,
        product_id: str,
        changes: dict[str, Any],
        user_id: str | None,
        role: str | None,
        expected_update: datetime | None = None,
    ) -> Product:
        """A partial update (`changes` validated by inputs.validate_product) by an admin or the
        owning seller, under the product's row lock; with `expected_update`, only while the
        product is still that version (product_rules.check_version)."""
        try:
            async with self.db.transaction() as session:
                product = await queries.product_for_update(session, product_id)
                product = product_rules.check_manageable(product, user_id, role)
                product_rules.check_version(product.updated_at, expected_update)
                price = changes.get("price_cents", product.price_cents)
                compare_at = changes.get("compare_at_price_cents", product.compare_at_price_cents)
                inputs.check_prices(price, compare_at)
                if "sku" in changes and changes["sku"] != product.sku:
                    if await queries.sku_taken(session, changes["sku"]):
                        raise sku_taken(changes["sku"])
                categories = await queries.categories(session)
                if "category_slug" in changes and changes["category_slug"] not in categories:
                    raise ValidationError.single("categorySlug", "no such category")
                for name, value in changes.items():
                    setattr(product, name, value)
                product.search_text = listing_rules.search_text(
                    product.brand, listing_rules.category_words(categories, product.category_slug)
                )
                product.updated_at = utcnow()
            return product
        except IntegrityError:
            raise sku_taken() from None

    async def archive_product(self, product_id: str, user_id: str | None, role: str | None) -> None:
        """DeleteProduct: ARCHIVED (soft delete); repeating it is fine."""
        async with self.db.transaction() as session:
            product = await queries.product_for_update(session, product_id)
            if product is None:
                raise product_rules.product_not_found()
            if product_rules.already_archived(product, user_id, role):
                return
            product.status = product_rules.ARCHIVED
            product.updated_at = utcnow()


def new_product(
    fields: dict[str, Any], seller_id: str | None, request_id: str | None, categories: dict[str, Any]
) -> Product:
    now = utcnow()
    return Product(
        id=new_id(),
        sku=fields["sku"],
        name=fields["name"],
        description=fields.get("description", ""),
        price_cents=fields["price_cents"],
        compare_at_price_cents=fields.get("compare_at_price_cents"),
        currency=fields["currency"],
        category_slug=fields["category_slug"],
        brand=fields.get("brand"),
        images=fields.get("images", []),
        stock=fields.get("stock", 0),
        status=fields.get("status") or product_rules.ACTIVE,
        seller_id=seller_id,
        rating_average=0.0,
        rating_count=0,
        search_text=listing_rules.search_text(
            fields.get("brand"), listing_rules.category_words(categories, fields["category_slug"])
        ),
        create_request_id=request_id,
        created_at=now,
        updated_at=now,
    )
