"""Queries of the catalog service. Every statement has bound parameters. Writes: each public
method is one unit of work (one transaction). Reads (products, categories, listing) take the lean
path of `shop.lib.db`: no transaction, no ORM, one round trip where one can do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from sqlalchemy import BigInteger, Integer, String, and_, column, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import domain, listing
from services.catalog.listing import PRODUCT_COLUMNS
from services.catalog.models import (
    Category,
    Product,
    Purchase,
    Reservation,
    ReservationLine,
    Review,
    StockAdjustment,
    WishlistItem,
)
from shop.lib.db import Database, Query, Transaction, UTCDateTime, new_id, utcnow
from shop.lib.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied, ValidationError

log = structlog.get_logger("catalog.repository")

PRODUCT_NOT_FOUND = "PRODUCT_NOT_FOUND"


def product_not_found() -> NotFound:
    return NotFound("Product not found.", code=PRODUCT_NOT_FOUND)


def invalid_page_token() -> InvalidArgument:
    return InvalidArgument(
        "The page token is not valid for this query.",
        code="INVALID_PAGE_TOKEN",
        fields={"pageToken": ["is not valid for this query"]},
    )


_PRODUCT_SELECT = "SELECT " + ", ".join(c.name for c in PRODUCT_COLUMNS) + " FROM products"  # noqa: S608 - model column names
GET_PRODUCT = Query(f"{_PRODUCT_SELECT} WHERE id = :id", PRODUCT_COLUMNS)
BATCH_GET_PRODUCTS = Query(
    f"{_PRODUCT_SELECT} WHERE id IN :ids", PRODUCT_COLUMNS,
    postgres_sql=f"{_PRODUCT_SELECT} WHERE id = ANY(:ids)", expanding=("ids",),
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


# -- reservations: the statements of the stock protocol (same text on both dialects unless noted) --

_NOW = {"now": UTCDateTime()}
_TIMES = {**_NOW, "expires_at": UTCDateTime()}
# Claims the reservation id: a concurrent twin waits here on the primary key, then finds it taken.
CLAIM_RESERVATION = Query(
    "INSERT INTO reservations (id, status, expires_at, created_at, updated_at) "
    "VALUES (:id, 'RESERVED', :expires_at, :now, :now) ON CONFLICT (id) DO NOTHING RETURNING id",
    [Reservation.id], types=_TIMES,
)
# Takes one line's stock and reads the product's snapshot in the same statement.
TAKE_STOCK = Query(
    "UPDATE products SET stock = stock - :quantity "
    "WHERE id = :product_id AND stock >= :quantity AND status = 'ACTIVE' "
    "RETURNING sku, name, price_cents, currency",
    [Product.sku, Product.name, Product.price_cents, Product.currency],
)
RETURN_STOCK = Query("UPDATE products SET stock = stock + :quantity WHERE id = :product_id")
# Why lines could not be taken (only on that failure path).
STOCK_OF = Query(
    "SELECT id, stock, status FROM products WHERE id IN :ids", [Product.id, Product.stock, Product.status],
    postgres_sql="SELECT id, stock, status FROM products WHERE id = ANY(:ids)", expanding=("ids",),
)
INSERT_LINES_POSTGRES = Query(
    "INSERT INTO reservation_lines (reservation_id, product_id, quantity, sku, name, unit_price_cents, currency_code) "
    "SELECT CAST(:reservation_id AS VARCHAR(64)), * FROM unnest("
    ":product_ids::varchar[], :quantities::int[], :skus::varchar[], :names::varchar[], :prices::bigint[], "
    ":currencies::varchar[])"
)
INSERT_LINE = Query(
    "INSERT INTO reservation_lines (reservation_id, product_id, quantity, sku, name, unit_price_cents, currency_code) "
    "VALUES (:reservation_id, :product_id, :quantity, :sku, :name, :unit_price_cents, :currency_code)"
)
# The reservation and its lines in product-id order, each with its snapshot (lines reserved before
# the snapshot columns existed take the product's current values).
_RESERVATION_SQL = (
    "SELECT r.status, r.expires_at, l.product_id, l.quantity, coalesce(l.sku, p.sku) AS sku, "
    "coalesce(l.name, p.name) AS name, coalesce(l.unit_price_cents, p.price_cents) AS unit_price_cents, "
    "coalesce(l.currency_code, p.currency) AS currency_code "
    "FROM reservations r LEFT JOIN reservation_lines l ON l.reservation_id = r.id "
    "LEFT JOIN products p ON p.id = l.product_id WHERE r.id = :id ORDER BY l.product_id"
)
_RESERVATION_COLUMNS = [
    Reservation.status, Reservation.expires_at, ReservationLine.product_id, ReservationLine.quantity,
    column("sku", String()), column("name", String()), column("unit_price_cents", BigInteger()),
    column("currency_code", String()),
]
RESERVATION = Query(_RESERVATION_SQL, _RESERVATION_COLUMNS)
RESERVATION_FOR_UPDATE = Query(
    _RESERVATION_SQL, _RESERVATION_COLUMNS, postgres_sql=_RESERVATION_SQL + " FOR UPDATE OF r"
)
SET_STATUS = Query("UPDATE reservations SET status = :status, updated_at = :now WHERE id = :id", types=_NOW)
SET_RESERVED = Query(
    "UPDATE reservations SET status = 'RESERVED', expires_at = :expires_at, updated_at = :now WHERE id = :id",
    types=_TIMES,
)
# CommitReservation.user_id: what RecordPurchases does, for the reservation's products (order id =
# reservation id). PostgreSQL marks the reviews verified in the same statement; SQLite runs both.
_RECORD_PURCHASES_SQL = (
    "INSERT INTO purchases (user_id, product_id, order_id, created_at) "
    "SELECT CAST(:user_id AS VARCHAR(36)), product_id, reservation_id, :now "
    "FROM reservation_lines WHERE reservation_id = :id "
    "ON CONFLICT (user_id, product_id) DO NOTHING"
)
_VERIFY_REVIEWS_SQL = (
    "UPDATE reviews SET verified_purchase = true WHERE user_id = :user_id AND NOT verified_purchase "
    "AND product_id IN (SELECT product_id FROM reservation_lines WHERE reservation_id = :id)"
)
RECORD_RESERVED_PURCHASES = Query(
    _RECORD_PURCHASES_SQL, types=_NOW,
    postgres_sql=f"WITH bought AS ({_RECORD_PURCHASES_SQL}) {_VERIFY_REVIEWS_SQL}",
)
VERIFY_RESERVED_REVIEWS = Query(_VERIFY_REVIEWS_SQL)


@dataclass
class ReservedLine:
    """A reserved line with the product as it was when it was reserved."""

    product_id: str
    quantity: int
    sku: str
    name: str
    unit_price_cents: int
    currency_code: str


@dataclass
class ReservationView:
    id: str
    status: str
    lines: list[tuple[str, int]]
    expires_at: datetime
    priced_lines: list[ReservedLine] = field(default_factory=list)


@dataclass
class Page:
    items: list[Any]
    last_key: Any
    last_id: str | None
    has_more: bool
    total: int


class CatalogRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- helpers -------------------------------------------------------------------------------

    def _insert(self, table):
        return pg_insert(table) if self.db.is_postgres else sqlite_insert(table)

    @staticmethod
    async def _categories(session: AsyncSession) -> dict[str, Any]:
        """Every category (slug, name, parent_slug), inside a write's transaction."""
        return {row.slug: row for row in (await session.execute(CATEGORIES.core)).all()}

    @staticmethod
    def _category_words(categories: dict[str, Any], slug: str) -> list[str]:
        words, seen, current = [], set(), categories.get(slug)
        while current is not None and current.slug not in seen:
            seen.add(current.slug)
            words += [current.slug, current.name]
            current = categories.get(current.parent_slug) if current.parent_slug else None
        return words

    # -- categories ----------------------------------------------------------------------------

    async def list_categories(self) -> list[tuple[Any, int]]:
        rows = await self.db.read_all(CATEGORIES_WITH_COUNTS)
        categories = {row.slug: row for row in rows}
        parents = {row.slug: row.parent_slug for row in rows}
        rolled = domain.rolled_up_counts({row.slug: row.active_count for row in rows}, parents)
        return [(categories[slug], rolled[slug]) for slug in sorted(categories)]

    async def create_category(self, slug: str, name: str, parent_slug: str | None) -> Category:
        exists = AlreadyExists(f"Category {slug!r} already exists.", code="CATEGORY_EXISTS")
        try:
            async with self.db.transaction() as session:
                if await session.get(Category, slug) is not None:
                    raise exists
                if parent_slug is not None and await session.get(Category, parent_slug) is None:
                    raise ValidationError.single("parentSlug", "no such category")
                category = Category(slug=slug, name=name, parent_slug=parent_slug, created_at=utcnow())
                session.add(category)
            return category
        except IntegrityError:
            raise exists from None

    # -- products: reads -----------------------------------------------------------------------

    async def get_product(self, product_id: str) -> Any | None:
        """The product's row (the columns of PRODUCT_COLUMNS), or None."""
        return await self.db.read_one(GET_PRODUCT, id=product_id)

    async def batch_get(self, product_ids: list[str]) -> list[Any]:
        if not product_ids:
            return []
        rows = await self.db.read_all(BATCH_GET_PRODUCTS, ids=product_ids)
        by_id = {row.id: row for row in rows}
        return [by_id[pid] for pid in product_ids if pid in by_id]

    def parse_sort_key(self, sort: str, raw: Any) -> Any:
        """The sort key a page token carries, back in its Python type (else INVALID_PAGE_TOKEN)."""
        try:
            if sort == "newest":
                value = datetime.fromisoformat(raw)
                if value.tzinfo is None:
                    raise ValueError("naive")
                return value
            if sort in ("price", "-price"):
                if not isinstance(raw, int) or isinstance(raw, bool):
                    raise ValueError("not an int")
                return raw
            if sort == "rating":
                return float(raw)
            if sort == "name":
                if not isinstance(raw, str):
                    raise ValueError("not a string")
                return raw
            if sort == "relevance":
                return Decimal(raw) if self.db.is_postgres else int(raw)
        except (ValueError, TypeError, InvalidOperation):
            raise invalid_page_token() from None
        raise invalid_page_token()

    @staticmethod
    def dump_sort_key(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    async def list_products(
        self, query: domain.ProductQuery, size: int, after: tuple[Any, str] | None
    ) -> Page:
        """One page in keyset order (statements in listing.py). The first page carries its total in
        a window count (one round trip); later pages count apart, their keyset narrowing the rows."""
        categories: list[str] = []
        if query.category_slug:
            parents = {row.slug: row.parent_slug for row in await self.db.read_all(CATEGORIES)}
            categories = sorted(domain.descendants(query.category_slug, parents))
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
            last_key=self.dump_sort_key(last.sort_key) if last is not None else None,
            last_id=last.id if last is not None else None,
            has_more=has_more,
            total=total,
        )

    # -- products: writes ----------------------------------------------------------------------

    async def create_product(
        self, fields: dict[str, Any], seller_id: str | None, request_id: str | None
    ) -> Product:
        sku_taken = AlreadyExists(f"SKU {fields['sku']!r} is already taken.", code="SKU_TAKEN")
        try:
            async with self.db.transaction() as session:
                if request_id is not None:
                    existing = (
                        await session.execute(select(Product).where(Product.create_request_id == request_id))
                    ).scalar_one_or_none()
                    if existing is not None:
                        if existing.sku != fields["sku"]:
                            raise Conflict("This idempotency key was used for another product.",
                                           code="IDEMPOTENCY_KEY_REUSED")
                        return existing
                if (await session.execute(select(Product.id).where(Product.sku == fields["sku"]))).first():
                    raise sku_taken
                categories = await self._categories(session)
                if fields["category_slug"] not in categories:
                    raise ValidationError.single("categorySlug", "no such category")
                now = utcnow()
                product = Product(
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
                    status=fields.get("status") or domain.ACTIVE,
                    seller_id=seller_id,
                    rating_average=0.0,
                    rating_count=0,
                    search_text=domain.search_text(
                        fields.get("brand"), self._category_words(categories, fields["category_slug"])
                    ),
                    create_request_id=request_id,
                    created_at=now,
                    updated_at=now,
                )
                session.add(product)
            return product
        except IntegrityError:
            # Lost a race: the same request id (return its product) or the same SKU.
            if request_id is not None:
                async with self.db.transaction() as session:
                    existing = (
                        await session.execute(select(Product).where(Product.create_request_id == request_id))
                    ).scalar_one_or_none()
                if existing is not None:
                    return existing
            raise sku_taken from None

    @staticmethod
    async def _managed_product(session: AsyncSession, product_id: str, user_id: str | None, role: str | None):
        product = (
            await session.execute(select(Product).where(Product.id == product_id).with_for_update())
        ).scalar_one_or_none()
        if product is None or not domain.can_see(product.status, product.seller_id, user_id, role):
            raise product_not_found()
        if not domain.can_manage(product.seller_id, user_id, role):
            raise PermissionDenied("Only an admin or the seller who owns this product may change it.")
        return product

    async def update_product(
        self, product_id: str, changes: dict[str, Any], user_id: str | None, role: str | None
    ) -> Product:
        try:
            async with self.db.transaction() as session:
                product = await self._managed_product(session, product_id, user_id, role)
                price = changes.get("price_cents", product.price_cents)
                compare_at = changes.get("compare_at_price_cents", product.compare_at_price_cents)
                domain.check_prices(price, compare_at)
                if "sku" in changes and changes["sku"] != product.sku:
                    taken = await session.execute(select(Product.id).where(Product.sku == changes["sku"]))
                    if taken.first():
                        raise AlreadyExists(f"SKU {changes['sku']!r} is already taken.", code="SKU_TAKEN")
                categories = await self._categories(session)
                if "category_slug" in changes and changes["category_slug"] not in categories:
                    raise ValidationError.single("categorySlug", "no such category")
                for name, value in changes.items():
                    setattr(product, name, value)
                product.search_text = domain.search_text(
                    product.brand, self._category_words(categories, product.category_slug)
                )
                product.updated_at = utcnow()
            return product
        except IntegrityError:
            raise AlreadyExists("That SKU is already taken.", code="SKU_TAKEN") from None

    async def archive_product(self, product_id: str, user_id: str | None, role: str | None) -> None:
        async with self.db.transaction() as session:
            product = (
                await session.execute(select(Product).where(Product.id == product_id).with_for_update())
            ).scalar_one_or_none()
            if product is None:
                raise product_not_found()
            if product.status == domain.ARCHIVED and domain.can_manage(product.seller_id, user_id, role):
                return  # deleting twice is fine for whoever could delete it
            product = await self._managed_product(session, product_id, user_id, role)
            product.status = domain.ARCHIVED
            product.updated_at = utcnow()

    async def adjust_stock(
        self, product_id: str, delta: int, reason: str, user_id: str | None, role: str | None,
        request_id: str | None,
    ) -> int:
        try:
            async with self.db.transaction() as session:
                if request_id is not None:
                    done = (
                        await session.execute(
                            select(StockAdjustment).where(StockAdjustment.request_id == request_id)
                        )
                    ).scalar_one_or_none()
                    if done is not None:
                        if (done.product_id, done.delta) != (product_id, delta):
                            raise Conflict("This idempotency key was used for another adjustment.",
                                           code="IDEMPOTENCY_KEY_REUSED")
                        return done.stock_after
                product = await self._managed_product(session, product_id, user_id, role)
                if product.stock + delta < 0:
                    raise Conflict(
                        f"Only {product.stock} in stock; cannot remove {-delta}.",
                        code="INSUFFICIENT_STOCK",
                        details={"productIds": [product_id], "stock": product.stock},
                    )
                # Conditional, so concurrent reservations can never drive stock below 0.
                result = await session.execute(
                    update(Product)
                    .where(Product.id == product_id, Product.stock + delta >= 0)
                    .values(stock=Product.stock + delta, updated_at=utcnow())
                    .returning(Product.stock)
                )
                stock = result.scalar_one_or_none()
                if stock is None:
                    raise Conflict("Not enough stock.", code="INSUFFICIENT_STOCK",
                                   details={"productIds": [product_id]})
                session.add(StockAdjustment(
                    id=new_id(), product_id=product_id, delta=delta, reason=reason, user_id=user_id,
                    request_id=request_id, stock_after=stock, created_at=utcnow(),
                ))
                await session.flush()
            return stock
        except IntegrityError:
            if request_id is None:
                raise
            # A concurrent repeat of the same request id won: answer what it answered.
            async with self.db.transaction() as session:
                done = (
                    await session.execute(select(StockAdjustment).where(StockAdjustment.request_id == request_id))
                ).scalar_one_or_none()
            if done is None:
                raise
            return done.stock_after

    # -- reservations (lean path: `db.write()`, one transaction of prepared statements) ----------

    @staticmethod
    async def _load_reservation(tx: Transaction, reservation_id: str, *, lock: bool) -> ReservationView | None:
        """The reservation with its priced lines (one statement; `lock`: its row locked for the
        rest of the transaction on PostgreSQL — SQLite writers are serialised anyway)."""
        rows = await tx.all(RESERVATION_FOR_UPDATE if lock else RESERVATION, id=reservation_id)
        if not rows:
            return None
        priced = [
            ReservedLine(row.product_id, row.quantity, row.sku, row.name, row.unit_price_cents, row.currency_code)
            for row in rows if row.product_id is not None
        ]
        return ReservationView(
            reservation_id, rows[0].status, [(line.product_id, line.quantity) for line in priced],
            rows[0].expires_at, priced,
        )

    @staticmethod
    async def _take_stock(tx: Transaction, lines: list[tuple[str, int]]) -> list[ReservedLine]:
        """Takes every line's quantity (product-id order; one conditional UPDATE per line that also
        reads the product's snapshot), or raises — the caller's transaction then rolls back, so
        nothing is taken. Unknown or non-ACTIVE products: PRODUCT_UNAVAILABLE; else the short
        ones: INSUFFICIENT_STOCK (one classifying query, only on this failure path)."""
        priced = []
        for index, (product_id, quantity) in enumerate(lines):
            row = await tx.one(TAKE_STOCK, product_id=product_id, quantity=quantity)
            if row is None:
                rest = lines[index:]
                found = {r.id: r for r in await tx.all(STOCK_OF, ids=[p for p, _ in rest])}
                unavailable = [p for p, _ in rest if p not in found or found[p].status != domain.ACTIVE]
                if unavailable:
                    raise Conflict("Some products are not available any more.", code="PRODUCT_UNAVAILABLE",
                                   details={"productIds": unavailable})
                # The line that failed is short even if stock came back since (a concurrent release).
                short = [product_id] + [p for p, q in rest[1:] if found[p].stock < q]
                raise Conflict("Not enough stock for some products.", code="INSUFFICIENT_STOCK",
                               details={"productIds": short})
            priced.append(ReservedLine(product_id, quantity, row.sku, row.name, row.price_cents, row.currency))
        return priced

    async def _insert_lines(self, tx: Transaction, reservation_id: str, priced: list[ReservedLine]) -> None:
        if self.db.is_postgres:  # every line in one statement
            await tx.execute(
                INSERT_LINES_POSTGRES, reservation_id=reservation_id,
                product_ids=[line.product_id for line in priced], quantities=[line.quantity for line in priced],
                skus=[line.sku for line in priced], names=[line.name for line in priced],
                prices=[line.unit_price_cents for line in priced], currencies=[line.currency_code for line in priced],
            )
            return
        for line in priced:  # SQLite: in-process, a statement per line costs no round trip
            await tx.execute(
                INSERT_LINE, reservation_id=reservation_id, product_id=line.product_id, quantity=line.quantity,
                sku=line.sku, name=line.name, unit_price_cents=line.unit_price_cents,
                currency_code=line.currency_code,
            )

    async def reserve(self, reservation_id: str, lines: list[tuple[str, int]], ttl_seconds: float,
                      renew: bool = False) -> ReservationView:
        """All lines or none, one conditional UPDATE per line in product-id order, in one transaction.
        Idempotent: the reservation row is claimed first (`INSERT ... ON CONFLICT DO NOTHING`), so a
        concurrent twin waits on the primary key and then reads the winner's result; a repeat never
        reserves twice. `renew` on a repeat: RESERVED gets a new expiry, RELEASED is re-taken."""
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl_seconds)
        async with self.db.write() as tx:
            if await tx.one(CLAIM_RESERVATION, id=reservation_id, expires_at=expires_at, now=now) is not None:
                priced = await self._take_stock(tx, lines)
                await self._insert_lines(tx, reservation_id, priced)
                return ReservationView(reservation_id, domain.RESERVED, lines, expires_at, priced)
            view = await self._load_reservation(tx, reservation_id, lock=renew)
            if view is None:  # cannot happen (reservations are never deleted); safe to retry
                raise Conflict("The reservation is being changed concurrently; retry.", code="RESERVATION_BUSY")
            if view.lines != lines:
                raise Conflict(
                    "This reservation id was already used with other lines.", code="RESERVATION_MISMATCH"
                )
            if renew and view.status in (domain.RESERVED, domain.RELEASED):
                if view.status == domain.RELEASED:
                    await self._take_stock(tx, lines)  # all or none; the stored snapshot stays
                await tx.execute(SET_RESERVED, id=reservation_id, expires_at=expires_at, now=now)
                view.status, view.expires_at = domain.RESERVED, expires_at
            return view

    async def commit_reservation(self, reservation_id: str, user_id: str | None = None) -> ReservationView:
        """RESERVED -> COMMITTED; RELEASED (expired before the paid order got here) is re-taken all
        or none and committed, else RESERVATION_RELEASED with nothing changed. With `user_id`, the
        user's purchases of the products are recorded in the same transaction (idempotent)."""
        now = utcnow()
        async with self.db.write() as tx:
            view = await self._load_reservation(tx, reservation_id, lock=True)
            if view is None:
                raise NotFound("Reservation not found.", code="RESERVATION_NOT_FOUND")
            if view.status in (domain.RESERVED, domain.RELEASED):
                if view.status == domain.RELEASED:
                    try:
                        await self._take_stock(tx, view.lines)
                    except Conflict as exc:
                        raise Conflict("The reservation was released (expired or cancelled) and its stock is "
                                       "gone.", code="RESERVATION_RELEASED", details=exc.details) from None
                await tx.execute(SET_STATUS, id=reservation_id, status=domain.COMMITTED, now=now)
                view.status = domain.COMMITTED
            # COMMITTED (a repeat) or RESTOCKED (committed earlier): nothing to do for the stock
            if user_id is not None:
                await tx.execute(RECORD_RESERVED_PURCHASES, id=reservation_id, user_id=user_id, now=now)
                if not self.db.is_postgres:  # PostgreSQL did this in the statement above
                    await tx.execute(VERIFY_RESERVED_REVIEWS, id=reservation_id, user_id=user_id)
            return view

    @staticmethod
    async def _return_stock(tx: Transaction, view: ReservationView) -> None:
        for product_id, quantity in view.lines:  # product-id order, like ReserveStock
            await tx.execute(RETURN_STOCK, product_id=product_id, quantity=quantity)

    async def release_reservation(self, reservation_id: str, *, only_expired_before: datetime | None = None
                                  ) -> ReservationView | None:
        async with self.db.write() as tx:
            view = await self._load_reservation(tx, reservation_id, lock=True)
            if view is None:
                raise NotFound("Reservation not found.", code="RESERVATION_NOT_FOUND")
            if view.status in (domain.COMMITTED, domain.RESTOCKED):
                if only_expired_before is not None:
                    return None
                raise Conflict(
                    "The reservation is committed; use RestockReservation to put its stock back.",
                    code="RESERVATION_COMMITTED",
                )
            if view.status == domain.RESERVED:
                if only_expired_before is not None and view.expires_at >= only_expired_before:
                    return None
                await self._return_stock(tx, view)
                await tx.execute(SET_STATUS, id=reservation_id, status=domain.RELEASED, now=utcnow())
                view.status = domain.RELEASED
            return view

    async def restock_reservation(self, reservation_id: str) -> ReservationView:
        async with self.db.write() as tx:
            view = await self._load_reservation(tx, reservation_id, lock=True)
            if view is None:
                raise NotFound("Reservation not found.", code="RESERVATION_NOT_FOUND")
            if view.status == domain.RESERVED:
                raise Conflict("The reservation is not committed; release it instead.",
                               code="RESERVATION_NOT_COMMITTED")
            if view.status == domain.RELEASED:
                raise Conflict("The reservation was released; its stock is already back.",
                               code="RESERVATION_RELEASED")
            if view.status == domain.COMMITTED:
                await self._return_stock(tx, view)
                await tx.execute(SET_STATUS, id=reservation_id, status=domain.RESTOCKED, now=utcnow())
                view.status = domain.RESTOCKED
            return view

    async def expired_reservation_ids(self, now: datetime, limit: int = 100) -> list[str]:
        async with self.db.transaction() as session:
            rows = await session.execute(
                select(Reservation.id)
                .where(Reservation.status == domain.RESERVED, Reservation.expires_at < now)
                .order_by(Reservation.expires_at)
                .limit(limit)
            )
            return [row[0] for row in rows]

    async def release_expired(self, now: datetime | None = None) -> int:
        """Releases every RESERVED reservation whose TTL has passed; returns how many."""
        now = now or utcnow()
        released = 0
        while True:
            ids = await self.expired_reservation_ids(now)
            if not ids:
                return released
            for reservation_id in ids:
                if await self.release_reservation(reservation_id, only_expired_before=now) is not None:
                    released += 1
            if len(ids) < 100:
                return released

    # -- purchases, reviews --------------------------------------------------------------------

    async def record_purchases(self, order_id: str, user_id: str, product_ids: list[str]) -> None:
        if not product_ids:
            return
        async with self.db.transaction() as session:
            now = utcnow()
            statement = self._insert(Purchase).values(
                [{"user_id": user_id, "product_id": pid, "order_id": order_id, "created_at": now}
                 for pid in product_ids]
            ).on_conflict_do_nothing(index_elements=["user_id", "product_id"])
            await session.execute(statement)
            await session.execute(
                update(Review)
                .where(Review.user_id == user_id, Review.product_id.in_(product_ids))
                .values(verified_purchase=True)
            )

    async def create_review(
        self, product_id: str, user_id: str, role: str | None, rating: int, title: str, body: str
    ) -> Review:
        exists = AlreadyExists("You have already reviewed this product.", code="REVIEW_EXISTS")
        try:
            async with self.db.transaction() as session:
                # Lock the product first: concurrent reviews of it queue here, and each one's
                # aggregate below is computed by a later statement that sees the others.
                product = (
                    await session.execute(select(Product).where(Product.id == product_id).with_for_update())
                ).scalar_one_or_none()
                if product is None or not domain.can_see(product.status, product.seller_id, user_id, role):
                    raise product_not_found()
                taken = await session.execute(
                    select(Review.id).where(Review.product_id == product_id, Review.user_id == user_id)
                )
                if taken.first():
                    raise exists
                verified = (
                    await session.execute(
                        select(Purchase.user_id).where(Purchase.user_id == user_id, Purchase.product_id == product_id)
                    )
                ).first() is not None
                review = Review(
                    id=new_id(), product_id=product_id, user_id=user_id, rating=rating, title=title, body=body,
                    verified_purchase=verified, created_at=utcnow(),
                )
                session.add(review)
                await session.flush()
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
            return review
        except IntegrityError:
            raise exists from None

    async def list_reviews(
        self, product_id: str, user_id: str | None, role: str | None, size: int, after: tuple[datetime, str] | None
    ) -> Page:
        async with self.db.transaction() as session:
            product = await session.get(Product, product_id)
            if product is None or not domain.can_see(product.status, product.seller_id, user_id, role):
                raise product_not_found()
            condition = Review.product_id == product_id
            total = (await session.execute(select(func.count()).select_from(Review).where(condition))).scalar_one()
            statement = select(Review).where(condition)
            if after is not None:
                last_time, last_id = after
                statement = statement.where(
                    or_(Review.created_at < last_time, and_(Review.created_at == last_time, Review.id < last_id))
                )
            rows = (
                await session.execute(statement.order_by(Review.created_at.desc(), Review.id.desc()).limit(size + 1))
            ).scalars().all()
        has_more = len(rows) > size
        rows = list(rows[:size])
        last = rows[-1] if rows else None
        return Page(rows, last.created_at.isoformat() if last else None, last.id if last else None, has_more, total)

    # -- wishlist ------------------------------------------------------------------------------

    async def add_wishlist_item(self, user_id: str, role: str | None, product_id: str) -> None:
        async with self.db.transaction() as session:
            product = await session.get(Product, product_id)
            if product is None or not domain.can_see(product.status, product.seller_id, user_id, role):
                raise product_not_found()
            if await session.get(WishlistItem, (user_id, product_id)) is not None:
                return
            count = (
                await session.execute(select(func.count()).where(WishlistItem.user_id == user_id))
            ).scalar_one()
            if count >= domain.MAX_WISHLIST_ITEMS:
                raise Conflict(f"A wishlist holds at most {domain.MAX_WISHLIST_ITEMS} products.",
                               code="WISHLIST_FULL")
            await session.execute(
                self._insert(WishlistItem)
                .values(user_id=user_id, product_id=product_id, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
            )

    async def remove_wishlist_item(self, user_id: str, product_id: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                delete(WishlistItem).where(WishlistItem.user_id == user_id, WishlistItem.product_id == product_id)
            )

    async def list_wishlist(self, user_id: str, role: str | None) -> list[tuple[Product, datetime]]:
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    select(Product, WishlistItem.created_at)
                    .join(WishlistItem, WishlistItem.product_id == Product.id)
                    .where(WishlistItem.user_id == user_id)
                    .order_by(WishlistItem.created_at.desc(), Product.id)
                )
            ).all()
        return [
            (product, added) for product, added in rows
            if domain.can_see(product.status, product.seller_id, user_id, role)
        ]
