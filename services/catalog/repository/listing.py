"""The product listing's SQL: one statement per *shape* of query, built and compiled once.

A shape is what changes the SQL (the sort, which filters are present, the number of search words
on SQLite, first page or a later one); the values (words, prices, the keyset position) are bound
parameters. So a listing costs a dictionary lookup and one round trip, not a statement build and a
compile per request. On PostgreSQL search is the `search_vector` full-text index (`@@`, ranked
with `ts_rank`); on SQLite it falls back to LIKE over name, description and `search_text`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Numeric, and_, any_, bindparam, case, cast, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.sql import Select

from services.catalog.domain import listing as listing_rules
from services.catalog.domain import products as product_rules
from services.catalog.models import Product

PRODUCTS = Product.__table__
# What product_proto reads.
PRODUCT_COLUMNS = [
    PRODUCTS.c[name]
    for name in (
        "id",
        "sku",
        "name",
        "description",
        "price_cents",
        "compare_at_price_cents",
        "currency",
        "category_slug",
        "brand",
        "images",
        "stock",
        "status",
        "seller_id",
        "rating_average",
        "rating_count",
        "created_at",
        "updated_at",
    )
]
RANK_DIGITS = 6
_SEARCH_VECTOR = literal_column("products.search_vector", type_=TSVECTOR)
_LIKE_ESCAPE = "/"


@dataclass(frozen=True)
class Shape:
    postgres: bool
    sort: str
    words: int  # search words on SQLite (PostgreSQL binds the whole query once)
    search: bool
    category: bool
    brand: bool
    min_price: bool
    max_price: bool
    in_stock: bool
    after: bool  # a later page: keyset position bound, total counted apart


def shape_of(query: listing_rules.ProductQuery, *, postgres: bool, after: bool) -> Shape:
    return Shape(
        postgres=postgres,
        sort=query.sort,
        words=0 if postgres else len(listing_rules.search_words(query.query)),
        search=bool(query.query),
        category=bool(query.category_slug),
        brand=bool(query.brand),
        min_price=query.min_price_cents is not None,
        max_price=query.max_price_cents is not None,
        in_stock=query.in_stock_only,
        after=after,
    )


def like_pattern(word: str) -> str:
    escaped = word.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2).replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def parameters(
    query: listing_rules.ProductQuery, categories: list[str], size: int, after: tuple[Any, str] | None
) -> dict[str, Any]:
    """The values bound into a shape's statement."""
    values: dict[str, Any] = {
        "active": product_rules.ACTIVE,
        "limit": size + 1,
        "q": query.query,
        "categories": categories,
        "brand": query.brand.lower(),
        "min_price": query.min_price_cents,
        "max_price": query.max_price_cents,
    }
    for index, word in enumerate(listing_rules.search_words(query.query)):
        values[f"word_{index}"] = like_pattern(word)
    if after is not None:
        values["last_key"], values["last_id"] = after
    return values


def _contains(expression, index: int):
    return expression.like(bindparam(f"word_{index}"), escape=_LIKE_ESCAPE)


def _sort_key(shape: Shape):
    """(key expression, descending?) of a sort; the id breaks ties in the same direction."""
    if shape.sort == "relevance":
        if shape.postgres:
            rank = func.ts_rank(_SEARCH_VECTOR, _tsquery())
            return func.round(cast(rank, Numeric), RANK_DIGITS), True
        hits = [case((_contains(func.lower(PRODUCTS.c.name), i), 1), else_=0) for i in range(shape.words)]
        return sum(hits[1:], hits[0]), True  # relevance implies words (listing_rules.product_query)
    return {
        "newest": (PRODUCTS.c.created_at, True),
        "price": (PRODUCTS.c.price_cents, False),
        "-price": (PRODUCTS.c.price_cents, True),
        "rating": (PRODUCTS.c.rating_average, True),
        "name": (func.lower(PRODUCTS.c.name), False),
    }[shape.sort]


def _tsquery():
    return func.plainto_tsquery(literal_column("'english'::regconfig"), bindparam("q"))


def conditions(shape: Shape) -> list:
    found: list = [PRODUCTS.c.status == bindparam("active")]
    if shape.search and shape.postgres:
        found.append(_SEARCH_VECTOR.bool_op("@@")(_tsquery()))
    for index in range(shape.words):
        found.append(
            or_(
                *(
                    _contains(func.lower(column), index)
                    for column in (PRODUCTS.c.name, PRODUCTS.c.description, PRODUCTS.c.search_text)
                )
            )
        )
    if shape.category:
        if shape.postgres:
            slugs = bindparam("categories", type_=ARRAY(PRODUCTS.c.category_slug.type))
            found.append(PRODUCTS.c.category_slug == any_(slugs))
        else:
            found.append(PRODUCTS.c.category_slug.in_(bindparam("categories", expanding=True)))
    if shape.brand:
        found.append(func.lower(PRODUCTS.c.brand) == bindparam("brand"))
    if shape.min_price:
        found.append(PRODUCTS.c.price_cents >= bindparam("min_price"))
    if shape.max_price:
        found.append(PRODUCTS.c.price_cents <= bindparam("max_price"))
    if shape.in_stock:
        found.append(PRODUCTS.c.stock > 0)
    return found


@functools.cache
def page_statement(shape: Shape) -> Select:
    """The page (size + 1 rows, to know whether more follow) with its sort key, and on a first
    page the total in a window count."""
    where = conditions(shape)
    key, descending = _sort_key(shape)
    statement = select(*PRODUCT_COLUMNS, key.label("sort_key"))
    if not shape.after:
        statement = statement.add_columns(func.count().over().label("total_size"))
    else:
        last_key = bindparam("last_key", type_=key.type)
        last_id: BindParameter[str] = bindparam("last_id")
        newer = key < last_key if descending else key > last_key
        tie = PRODUCTS.c.id < last_id if descending else PRODUCTS.c.id > last_id
        where = [*where, or_(newer, and_(key == last_key, tie))]
    order = (key.desc(), PRODUCTS.c.id.desc()) if descending else (key.asc(), PRODUCTS.c.id.asc())
    return statement.where(*where).order_by(*order).limit(bindparam("limit"))


@functools.cache
def count_statement(shape: Shape) -> Select:
    return select(func.count().label("total_size")).select_from(PRODUCTS).where(*conditions(shape))
