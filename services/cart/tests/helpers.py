"""Shared by the cart's integration tests: products made through the catalog's gRPC contract
(with an admin's token), cart inspection through SQL, and callers with other service identities."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from services.cart.domain import Owner
from shop.catalog.v1 import catalog_pb2

CATEGORY = "cart-tests"
_admins: dict[int, list[tuple[str, str]]] = {}


async def admin_metadata(suite) -> list[tuple[str, str]]:
    if id(suite) not in _admins:
        admin = await suite.admin()
        metadata = [("authorization", f"Bearer {admin['tokens']['accessToken']}")]
        try:
            await suite.stub("catalog").CreateCategory(
                catalog_pb2.CreateCategoryRequest(slug=CATEGORY, name="Cart tests"), metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        _admins[id(suite)] = metadata
    return _admins[id(suite)]


async def make_product(
    suite, *, price: int = 1000, stock: int = 10, draft: bool = False, currency: str = "USD"
) -> dict[str, Any]:
    metadata = await admin_metadata(suite)
    sku = f"CART-{uuid.uuid4().hex[:10].upper()}"
    response = await suite.stub("catalog").CreateProduct(
        catalog_pb2.CreateProductRequest(
            request_id=str(uuid.uuid4()),
            sku=sku,
            name=f"Cart test product {sku}",
            description="For the cart's tests.",
            price_cents=price,
            currency_code=currency,
            category_slug=CATEGORY,
            stock=stock,
            status=catalog_pb2.PRODUCT_STATUS_DRAFT if draft else catalog_pb2.PRODUCT_STATUS_ACTIVE,
        ),
        metadata=metadata,
    )
    product = response.product
    return {"id": product.id, "sku": product.sku, "name": product.name, "price": product.price_cents}


async def set_price(suite, product_id: str, price: int) -> None:
    await suite.stub("catalog").UpdateProduct(
        catalog_pb2.UpdateProductRequest(product_id=product_id, price_cents=price),
        metadata=await admin_metadata(suite),
    )


async def archive(suite, product_id: str) -> None:
    await suite.stub("catalog").DeleteProduct(
        catalog_pb2.DeleteProductRequest(product_id=product_id), metadata=await admin_metadata(suite)
    )


async def adjust_stock(suite, product_id: str, delta: int) -> int:
    response = await suite.stub("catalog").AdjustStock(
        catalog_pb2.AdjustStockRequest(
            product_id=product_id, delta=delta, reason="cart test", request_id=str(uuid.uuid4())
        ),
        metadata=await admin_metadata(suite),
    )
    return response.stock


def service_stub(suite, service_name: str, target: str = "cart"):
    """A stub calling `target` with the identity of `service_name` (e.g. "orders")."""
    return suite.clients_as(service_name).stub(target)


def cart_id(*, user_id: str | None = None, session_id: str | None = None) -> str:
    return Owner(user_id=user_id, session_id=session_id).cart_id


def cart_rows(suite, cart: str) -> dict[str, int]:
    """{product_id: quantity} of a cart, read from the cart service's own database."""
    return dict(suite.sql("cart", "SELECT product_id, quantity FROM cart_items WHERE cart_id = %s", (cart,)))


def snapshot(suite) -> list[tuple]:
    """Everything the cart service stores (to prove that a refused request changed nothing)."""
    carts = suite.sql("cart", "SELECT id, user_id, session_id, updated_at FROM carts ORDER BY id")
    items = suite.sql(
        "cart", "SELECT cart_id, product_id, quantity, updated_at FROM cart_items ORDER BY cart_id, product_id"
    )
    checkouts = suite.sql(
        "cart", "SELECT checkout_id, cart_id, lines::text, state FROM cart_checkouts ORDER BY checkout_id"
    )
    return carts + items + checkouts
