"""A product's statuses and who may see and change it; the wishlist's size."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar

from shop.lib.errors import Conflict, NotFound, PermissionDenied

ACTIVE = "ACTIVE"
DRAFT = "DRAFT"
ARCHIVED = "ARCHIVED"
PRODUCT_STATUSES = (ACTIVE, DRAFT, ARCHIVED)

MAX_WISHLIST_ITEMS = 500


def can_see(product_status: str, product_seller: str | None, user_id: str | None, role: str | None) -> bool:
    """ACTIVE: everybody. DRAFT: admins and the owning seller. ARCHIVED: nobody (404)."""
    if product_status == ACTIVE:
        return True
    if product_status == DRAFT:
        return role == "ADMIN" or (user_id is not None and product_seller == user_id)
    return False


def can_manage(product_seller: str | None, user_id: str | None, role: str | None) -> bool:
    return role == "ADMIN" or (role == "SELLER" and user_id is not None and product_seller == user_id)


def product_not_found() -> NotFound:
    return NotFound("Product not found.", code="PRODUCT_NOT_FOUND")


class _ProductRow(Protocol):  # what the checks read of a product (ORM model or lean row)
    @property
    def status(self) -> str: ...
    @property
    def seller_id(self) -> str | None: ...


_Product = TypeVar("_Product", bound=_ProductRow)


def check_visible(product: _Product | None, user_id: str | None, role: str | None) -> _Product:
    """A product the caller may not see does not exist for it (404, never 403). Returns it."""
    if product is None or not can_see(product.status, product.seller_id, user_id, role):
        raise product_not_found()
    return product


def check_manageable(product: _Product | None, user_id: str | None, role: str | None) -> _Product:
    """Changing a product: 404 if the caller cannot see it, 403 if it sees it but does not own it.
    Returns it."""
    visible = check_visible(product, user_id, role)
    if not can_manage(visible.seller_id, user_id, role):
        raise PermissionDenied("Only an admin or the seller who owns this product may change it.")
    return visible


def check_version(current: datetime, expected: datetime | None) -> None:
    """An update made against a version the client read (REST If-Match): refused, changing
    nothing, when the product changed since (412 PRECONDITION_FAILED at the gateway)."""
    if expected is not None and current != expected:
        raise Conflict("The product changed since it was read; read it again and retry.", code="PRECONDITION_FAILED")


def already_archived(product: Any | None, user_id: str | None, role: str | None) -> bool:
    """Archiving twice is fine for whoever could archive it (True: nothing to do); anyone else
    gets what `check_manageable` says."""
    if product is None:
        raise product_not_found()
    if product.status == ARCHIVED and can_manage(product.seller_id, user_id, role):
        return True
    check_manageable(product, user_id, role)
    return False


def owner_of_new_product(user_id: str | None, role: str | None) -> str | None:
    """A seller owns what it creates; admin-created products belong to the shop (no seller)."""
    return user_id if role == "SELLER" else None


def check_wishlist_room(count: int) -> None:
    if count >= MAX_WISHLIST_ITEMS:
        raise Conflict(f"A wishlist holds at most {MAX_WISHLIST_ITEMS} products.", code="WISHLIST_FULL")
