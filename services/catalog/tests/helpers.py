"""Helpers for the catalog's tests: products made directly through the use cases (so the
stock tests do not depend on the auth service), and errors decoded the way clients see them."""

from __future__ import annotations

import uuid

import grpc

from shop.lib.errors import decode_rpc_error


class CatalogFixtures:
    def __init__(self, suite) -> None:
        self.suite = suite
        self.products = suite.servers["catalog"].runtime.products
        self.category: str | None = None

    async def product(self, stock: int = 10, **fields) -> str:
        if self.category is None:
            self.category = f"cat-{uuid.uuid4().hex[:8]}"
            await self.products.create_category(self.category, "Test category", None)
        values = {
            "sku": f"T-{uuid.uuid4().hex[:12]}",
            "name": "Test product",
            "description": "A product made by a test.",
            "price_cents": 1000,
            "currency": "USD",
            "category_slug": self.category,
            "stock": stock,
            "status": "ACTIVE",
            **fields,
        }
        product = await self.products.create_product(values, None, None)
        return product.id

    def stock(self, product_id: str) -> int:
        return self.suite.sql("catalog", "SELECT stock FROM products WHERE id = %s", (product_id,))[0][0]


async def rpc_error(awaitable):
    """Awaits a call that must fail; returns the decoded error (code, reason, details)."""
    try:
        await awaitable
    except grpc.aio.AioRpcError as exc:
        return decode_rpc_error(exc)
    raise AssertionError("the call succeeded but should have failed")
