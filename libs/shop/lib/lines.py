"""A priced line: a cart's item or an order's item, shown the same way by both services.

    cart_pb2.CartItem(**price_line(item), available=item.available)
    orders_pb2.OrderItem(**price_line(item))

The six fields carry the same names in the cart and orders protos (and in their rows), so one
function names them for both.
"""

from __future__ import annotations

from typing import Any, Protocol


class PricedLine(Protocol):
    @property
    def product_id(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def unit_price_cents(self) -> int: ...
    @property
    def quantity(self) -> int: ...
    @property
    def line_total_cents(self) -> int: ...


def price_line(line: PricedLine) -> dict[str, Any]:
    """The line's fields by their proto names."""
    return {
        "product_id": line.product_id,
        "sku": line.sku,
        "name": line.name,
        "unit_price_cents": line.unit_price_cents,
        "quantity": line.quantity,
        "line_total_cents": line.line_total_cents,
    }
