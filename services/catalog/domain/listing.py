"""The product listing's query (search words, price range, sort) and the category tree
(subcategories, rolled-up counts, the words a product is found by)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shop.lib.validation import FieldErrors

SEARCH_QUERY_MAX = 200
SORTS = ("relevance", "newest", "price", "-price", "rating", "name")


@dataclass(frozen=True)
class ProductQuery:
    query: str
    category_slug: str
    brand: str
    min_price_cents: int | None
    max_price_cents: int | None
    in_stock_only: bool
    sort: str

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "q": self.query,
            "category": self.category_slug,
            "brand": self.brand.lower(),
            "min": self.min_price_cents,
            "max": self.max_price_cents,
            "inStock": self.in_stock_only,
            "sort": self.sort,
        }


def search_words(query: str) -> list[str]:
    return [word for word in re.split(r"\s+", query.strip().lower()) if word]


def product_query(
    *,
    query: str,
    category_slug: str,
    brand: str,
    min_price_cents: int | None,
    max_price_cents: int | None,
    in_stock_only: bool,
    sort: str | None,
) -> ProductQuery:
    errors = FieldErrors()
    query = " ".join(query.split())
    if len(query) > SEARCH_QUERY_MAX:
        errors.add("q", f"must be at most {SEARCH_QUERY_MAX} characters")
    for name, value in (("minPriceCents", min_price_cents), ("maxPriceCents", max_price_cents)):
        if value is not None and value < 0:
            errors.add(name, "must be at least 0")
    if min_price_cents is not None and max_price_cents is not None and min_price_cents > max_price_cents:
        errors.add("maxPriceCents", "must be at least minPriceCents")
    if not sort:
        sort = "relevance" if query else "newest"
    if sort not in SORTS:
        errors.add("sort", f"must be one of {', '.join(SORTS)}")
    elif sort == "relevance" and not query:
        # Without words to rank by, relevance is the default order: newest first.
        sort = "newest"
    errors.no_nul("q", query)
    errors.no_nul("category", category_slug)
    errors.no_nul("brand", brand)
    errors.raise_if_any()
    return ProductQuery(
        query, category_slug.strip(), brand.strip(), min_price_cents, max_price_cents, in_stock_only, sort
    )


# -- the category tree -------------------------------------------------------------------------


def descendants(slug: str, parents: dict[str, str | None]) -> set[str]:
    """`slug` and every category below it (parents maps slug → parent slug)."""
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found, stack = set(), [slug]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(children.get(current, []))
    return found


def rolled_up_counts(direct: dict[str, int], parents: dict[str, str | None]) -> dict[str, int]:
    """Product counts per category including every subcategory."""
    return {slug: sum(direct.get(s, 0) for s in descendants(slug, parents)) for slug in parents}


def category_words(categories: dict[str, Any], slug: str) -> list[str]:
    """The slugs and names of a category and its ancestors (rows with slug, name, parent_slug)."""
    words, seen, current = [], set(), categories.get(slug)
    while current is not None and current.slug not in seen:
        seen.add(current.slug)
        words += [current.slug, current.name]
        current = categories.get(current.parent_slug) if current.parent_slug else None
    return words


def search_text(brand: str | None, category_words: list[str]) -> str:
    """The extra words a product is found by besides its name and description."""
    words = [brand or "", *category_words]
    return " ".join(word.replace("-", " ") for word in words if word)
