"""Protos ↔ the cart's domain values, in one place: the catalog's products read as `ProductInfo`,
a priced cart and a checkout's lines written as cart protos. No rules here."""

from __future__ import annotations

from collections.abc import Iterable

from services.cart.domain import Line, PricedCart, ProductInfo
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.lines import price_line


def product_info(product: catalog_pb2.Product) -> ProductInfo:
    return ProductInfo(
        id=product.id,
        sku=product.sku,
        name=product.name,
        price_cents=product.price_cents,
        currency=product.currency_code,
        stock=product.stock,
        active=product.status == catalog_pb2.PRODUCT_STATUS_ACTIVE,
    )


def cart_proto(cart: PricedCart) -> cart_pb2.Cart:
    return cart_pb2.Cart(
        id=cart.id,
        items=[cart_pb2.CartItem(**price_line(item), available=item.available) for item in cart.items],
        item_count=cart.item_count,
        subtotal_cents=cart.subtotal_cents,
        currency_code=cart.currency,
    )


def checkout_lines_proto(lines: Iterable[Line]) -> list[cart_pb2.CheckoutLine]:
    return [cart_pb2.CheckoutLine(product_id=line.product_id, quantity=line.quantity) for line in lines]
