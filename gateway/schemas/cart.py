"""Cart (API.md "Cart"): the Cart shape, built here from its proto, and the cart's request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.schemas.common import UUID_RULE, ApiModel, OutModel, Uuid, line_json
from shop.cart.v1 import cart_pb2

MAX_LINE_QUANTITY = 100


class CartItem(OutModel):
    product_id: Uuid
    sku: str
    name: str
    unit_price_cents: int = Field(description="The catalog's current price.")
    quantity: int
    line_total_cents: int = Field(description="unitPriceCents × quantity.")
    available: bool = Field(
        description="False when the catalog no longer sells the product (archived, draft, unknown) "
        "or has fewer in stock than the quantity. Unavailable lines are not counted in itemCount "
        "or subtotalCents."
    )


class Cart(OutModel):
    id: str
    items: list[CartItem]
    item_count: int = Field(description="Sum of the quantities of the available lines.")
    subtotal_cents: int = Field(description="Sum of the line totals of the available lines.")
    currency: str


def cart_json(cart: cart_pb2.Cart) -> dict[str, Any]:
    return {
        "id": cart.id,
        "items": [{**line_json(item), "available": item.available} for item in cart.items],
        "itemCount": cart.item_count,
        "subtotalCents": cart.subtotal_cents,
        "currency": cart.currency_code,
    }


class AddCartItemBody(ApiModel):
    product_id: str = Field(description="The product's id (UUID).", json_schema_extra=UUID_RULE)
    quantity: int = Field(default=1, ge=1, le=MAX_LINE_QUANTITY, description="Added to the line (1..100).")


class SetCartItemBody(ApiModel):
    quantity: int = Field(ge=0, le=MAX_LINE_QUANTITY, description="The line's new quantity; 0 removes it.")
