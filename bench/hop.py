"""The architecture's floor, for `make bench`: the shop's hot reads split the way the shop is
split, with none of the shop's code.

Three processes, each with only what any FastAPI-gateway-plus-Python-gRPC design pays:

- a *back* (grpc.aio on the catalog's database, the catalog's real messages): `GetProduct` runs
  the baseline's one SQL query; `ListProducts` the shop's first-page query (20 ACTIVE products,
  newest first, the total in a window count); `BatchGetProducts` one `= ANY` query;
- a *mid* (grpc.aio on the cart's database, the cart's real messages): `GetCart` reads a guest
  cart's lines in one query, prices them with one `BatchGetProducts` call to the back;
  `AddCartItem` reads the lines, checks the product with one `BatchGetProducts` (which also prices
  the answer), then creates-or-stamps the cart and adds to the line in one statement (no
  transaction around them, no idempotency key, no line limit: less than a correct add needs);
- a *front* (FastAPI + uvicorn, exactly the baseline's settings) that turns each answer into the
  shop's JSON: `/products/{id}` and `/products` call the back (one hop), `/cart` (header
  `X-Session-ID`) and `POST /cart/items` call the mid, which calls the back (two hops, like the
  shop's cart).

No interceptors, no caller identity, no deadline bookkeeping, no page tokens, no logging, no
metrics, no response validation. Each scenario's ratio to the baseline is the ceiling the shop's
same scenario can approach, which is why the bench measures each beside it.

    python -m bench.hop back --port 18101 --database-url postgresql://postgres@127.0.0.1:5432/catalog
    python -m bench.hop mid --port 18103 --database-url postgresql://…/cart --backend 127.0.0.1:18101
    python -m bench.hop front --port 18102 --backend 127.0.0.1:18101 --cart-backend 127.0.0.1:18103
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from bench.baseline import POOL_SIZE, QUERY, rfc3339
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2

STATUS = {name: catalog_pb2.ProductStatus.Value(f"PRODUCT_STATUS_{name}") for name in ("ACTIVE", "DRAFT", "ARCHIVED")}
STATUS_NAME = {value: name for name, value in STATUS.items()}
COLUMNS = QUERY.split(" FROM ")[0].removeprefix("SELECT ")
# The shop's first page of GET /products (services/catalog/repository/listing.py, no filters).
LIST_QUERY = (
    f"SELECT {COLUMNS}, count(*) OVER () AS total_size FROM products WHERE status = 'ACTIVE'"  # noqa: S608
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)
BATCH_QUERY = f"SELECT {COLUMNS} FROM products WHERE id = ANY(%s)"  # noqa: S608 - constants only
CART_LINES_QUERY = (
    "SELECT i.cart_id, i.product_id, i.quantity FROM cart_items i JOIN carts c ON c.id = i.cart_id"
    " WHERE c.session_id = %s ORDER BY i.created_at, i.product_id"
)
ADD_QUERY = (
    "WITH cart AS (INSERT INTO carts (id, session_id, created_at, updated_at) VALUES (%(cart_id)s, %(session_id)s,"
    " now(), now()) ON CONFLICT (session_id) DO UPDATE SET updated_at = excluded.updated_at RETURNING id)"
    " INSERT INTO cart_items (id, cart_id, product_id, quantity, created_at, updated_at)"
    " SELECT %(id)s, cart.id, %(product_id)s, %(quantity)s, now(), now() FROM cart"
    " ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity,"
    " updated_at = excluded.updated_at WHERE cart_items.quantity + excluded.quantity <= 100"
    " RETURNING cart_id, quantity"
)
CATALOG = "/shop.catalog.v1.CatalogService/"
CART = "/shop.cart.v1.CartService/"


def product_proto(row: dict[str, Any]) -> catalog_pb2.Product:
    product = catalog_pb2.Product(
        id=str(row["id"]),
        sku=row["sku"],
        name=row["name"],
        description=row["description"],
        price_cents=row["price_cents"],
        compare_at_price_cents=row["compare_at_price_cents"] or 0,
        currency_code=row["currency"],
        category_slug=row["category_slug"] or "",
        brand=row["brand"] or "",
        images=row["images"] or [],
        stock=row["stock"],
        status=STATUS[row["status"]],
        seller_id=str(row["seller_id"]) if row["seller_id"] else "",
        rating_average=row["rating_average"],
        rating_count=row["rating_count"],
    )
    product.create_time.FromDatetime(row["created_at"])
    product.update_time.FromDatetime(row["updated_at"])
    return product


def product_json(p: catalog_pb2.Product) -> dict[str, Any]:
    return {
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "priceCents": p.price_cents,
        "compareAtPriceCents": p.compare_at_price_cents or None,
        "currency": p.currency_code,
        "categorySlug": p.category_slug or None,
        "brand": p.brand or None,
        "images": list(p.images),
        "stock": p.stock,
        "status": STATUS_NAME[p.status],
        "sellerId": p.seller_id or None,
        "rating": {"average": round(p.rating_average, 2), "count": p.rating_count},
        "createdAt": rfc3339(p.create_time.ToDatetime(tzinfo=UTC)),
        "updatedAt": rfc3339(p.update_time.ToDatetime(tzinfo=UTC)),
    }


def cart_json(cart: cart_pb2.Cart) -> dict[str, Any]:
    return {
        "id": cart.id,
        "items": [
            {
                "productId": item.product_id,
                "sku": item.sku,
                "name": item.name,
                "unitPriceCents": item.unit_price_cents,
                "quantity": item.quantity,
                "lineTotalCents": item.line_total_cents,
                "available": item.available,
            }
            for item in cart.items
        ],
        "itemCount": cart.item_count,
        "subtotalCents": cart.subtotal_cents,
        "currency": cart.currency_code,
    }


def new_pool(database_url: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        database_url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": True},
    )


async def fetch_rows(pool: Any, query: str, params: Any) -> list[dict[str, Any]]:
    """One autocommit query on a pooled connection; rows are dicts (dict_row)."""
    async with pool.connection() as conn:
        return await (await conn.execute(query, params)).fetchall()


class Back:
    """The catalog's three reads, each one query."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool: Any = pool  # rows are dicts (dict_row), which the pool's generic type cannot say

    async def get_product(self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext):
        rows = await fetch_rows(self.pool, QUERY, (request.product_id,))
        if not rows or rows[0]["status"] == "ARCHIVED":
            await context.abort(grpc.StatusCode.NOT_FOUND, "not found")
        return catalog_pb2.GetProductResponse(product=product_proto(rows[0]))

    async def list_products(self, request: catalog_pb2.ListProductsRequest, _context: grpc.aio.ServicerContext):
        rows = await fetch_rows(self.pool, LIST_QUERY, (request.page_size + 1,))
        return catalog_pb2.ListProductsResponse(
            products=[product_proto(row) for row in rows[: request.page_size]],
            total_size=rows[0]["total_size"] if rows else 0,
        )

    async def batch_get_products(
        self, request: catalog_pb2.BatchGetProductsRequest, _context: grpc.aio.ServicerContext
    ):
        rows = await fetch_rows(self.pool, BATCH_QUERY, (list(request.product_ids),))
        return catalog_pb2.BatchGetProductsResponse(products=[product_proto(row) for row in rows])


class Mid:
    """The cart's read and add: lines from one query, priced by one BatchGetProducts call to the back."""

    def __init__(self, pool: AsyncConnectionPool, batch_get: grpc.aio.UnaryUnaryMultiCallable) -> None:
        self.pool: Any = pool
        self.batch_get = batch_get

    async def products(self, ids: list[str]) -> dict[str, catalog_pb2.Product]:
        if not ids:
            return {}
        answer = await self.batch_get(catalog_pb2.BatchGetProductsRequest(product_ids=sorted(set(ids))), timeout=5)
        return {p.id: p for p in answer.products}

    async def get_cart(self, request: cart_pb2.GetCartRequest, _context: grpc.aio.ServicerContext):
        lines = await fetch_rows(self.pool, CART_LINES_QUERY, (request.owner.session_id,))
        found = await self.products([str(line["product_id"]) for line in lines])
        cart_id = str(lines[0]["cart_id"]) if lines else ""
        return cart_pb2.GetCartResponse(
            cart=priced(cart_id, [(str(r["product_id"]), r["quantity"]) for r in lines], found)
        )

    async def add_cart_item(self, request: cart_pb2.AddCartItemRequest, context: grpc.aio.ServicerContext):
        lines = [
            (str(r["product_id"]), r["quantity"], str(r["cart_id"]))
            for r in await fetch_rows(self.pool, CART_LINES_QUERY, (request.owner.session_id,))
        ]
        found = await self.products([request.product_id, *(line[0] for line in lines)])
        product = found.get(request.product_id)
        if product is None or product.status != STATUS["ACTIVE"]:
            await context.abort(grpc.StatusCode.NOT_FOUND, "not found")
        params = {
            "cart_id": lines[0][2] if lines else str(uuid.uuid4()),
            "session_id": request.owner.session_id,
            "id": str(uuid.uuid4()),
            "product_id": request.product_id,
            "quantity": request.quantity,
        }
        added = await fetch_rows(self.pool, ADD_QUERY, params)
        if not added:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "over the line's cap")
        quantities = {product_id: quantity for product_id, quantity, _ in lines}
        quantities[request.product_id] = added[0]["quantity"]
        return cart_pb2.AddCartItemResponse(cart=priced(str(added[0]["cart_id"]), list(quantities.items()), found))


def priced(cart_id: str, lines: list[tuple[str, int]], found: dict[str, catalog_pb2.Product]) -> cart_pb2.Cart:
    cart = cart_pb2.Cart(id=cart_id, currency_code="USD")
    for product_id, quantity in lines:
        product = found.get(product_id)
        if product is None:
            continue
        total = product.price_cents * quantity
        cart.items.append(
            cart_pb2.CartItem(
                product_id=product.id,
                sku=product.sku,
                name=product.name,
                unit_price_cents=product.price_cents,
                quantity=quantity,
                line_total_cents=total,
                available=product.status == STATUS["ACTIVE"] and product.stock >= quantity,
            )
        )
        cart.item_count += quantity
        cart.subtotal_cents += total
    return cart


def unary(handler, request_type, response_type) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
    )


async def serve(port: int, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_back(port: int, database_url: str) -> None:
    pool = new_pool(database_url)
    await pool.open(wait=True)
    back = Back(pool)
    c = catalog_pb2
    handlers = {
        "GetProduct": unary(back.get_product, c.GetProductRequest, c.GetProductResponse),
        "ListProducts": unary(back.list_products, c.ListProductsRequest, c.ListProductsResponse),
        "BatchGetProducts": unary(back.batch_get_products, c.BatchGetProductsRequest, c.BatchGetProductsResponse),
    }
    await serve(port, "shop.catalog.v1.CatalogService", handlers)


def call(channel: grpc.aio.Channel, method: str, request_type, response_type) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        method, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
    )


async def serve_mid(port: int, database_url: str, backend: str) -> None:
    pool = new_pool(database_url)
    await pool.open(wait=True)
    channel = grpc.aio.insecure_channel(backend)
    batch_get = call(
        channel, CATALOG + "BatchGetProducts", catalog_pb2.BatchGetProductsRequest, catalog_pb2.BatchGetProductsResponse
    )
    mid = Mid(pool, batch_get)
    handlers = {
        "GetCart": unary(mid.get_cart, cart_pb2.GetCartRequest, cart_pb2.GetCartResponse),
        "AddCartItem": unary(mid.add_cart_item, cart_pb2.AddCartItemRequest, cart_pb2.AddCartItemResponse),
    }
    await serve(port, "shop.cart.v1.CartService", handlers)


class AddBody(BaseModel):
    productId: str  # noqa: N815 - the JSON field's name
    quantity: int = 1


def create_front(backend: str, cart_backend: str | None) -> FastAPI:
    calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        channel = grpc.aio.insecure_channel(backend)
        c = catalog_pb2
        calls["get_product"] = call(channel, CATALOG + "GetProduct", c.GetProductRequest, c.GetProductResponse)
        calls["list_products"] = call(channel, CATALOG + "ListProducts", c.ListProductsRequest, c.ListProductsResponse)
        cart_channel = grpc.aio.insecure_channel(cart_backend) if cart_backend else None
        if cart_channel is not None:
            calls["get_cart"] = call(cart_channel, CART + "GetCart", cart_pb2.GetCartRequest, cart_pb2.GetCartResponse)
            calls["add_cart_item"] = call(
                cart_channel, CART + "AddCartItem", cart_pb2.AddCartItemRequest, cart_pb2.AddCartItemResponse
            )
        yield
        await channel.close()
        if cart_channel is not None:
            await cart_channel.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/products/{product_id}")
    async def get_product(product_id: str) -> JSONResponse:
        try:
            request = catalog_pb2.GetProductRequest(product_id=product_id)
            p = (await calls["get_product"](request, timeout=5)).product
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return JSONResponse({"error": {"code": "NOT_FOUND"}}, status_code=404)
            raise
        return JSONResponse({"data": product_json(p)})

    @app.get("/products")
    async def list_products(page_size: int = 20) -> JSONResponse:
        answer = await calls["list_products"](catalog_pb2.ListProductsRequest(page_size=page_size), timeout=5)
        return JSONResponse(
            {
                "data": [product_json(p) for p in answer.products],
                "page": {"nextPageToken": None, "totalSize": answer.total_size},
            }
        )

    @app.get("/cart")
    async def get_cart(x_session_id: str = Header()) -> JSONResponse:
        request = cart_pb2.GetCartRequest(owner=cart_pb2.CartOwner(session_id=x_session_id))
        answer = await calls["get_cart"](request, timeout=5)
        return JSONResponse({"data": cart_json(answer.cart)})

    @app.post("/cart/items")
    async def add_cart_item(body: AddBody, x_session_id: str = Header()) -> JSONResponse:
        request = cart_pb2.AddCartItemRequest(
            owner=cart_pb2.CartOwner(session_id=x_session_id), product_id=body.productId, quantity=body.quantity
        )
        try:
            answer = await calls["add_cart_item"](request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return JSONResponse({"error": {"code": exc.code().name}}, status_code=400)
        return JSONResponse({"data": cart_json(answer.cart)})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("back", "mid", "front"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", help="the back's (catalog) or the mid's (cart) database")
    parser.add_argument("--backend", help="the back, host:port (for the front and the mid)")
    parser.add_argument("--cart-backend", help="the mid, host:port (for the front's /cart)")
    args = parser.parse_args()
    if args.role in ("back", "mid"):
        import uvloop

        uvloop.install()
        if args.role == "back":
            asyncio.run(serve_back(args.port, args.database_url))
        else:
            asyncio.run(serve_mid(args.port, args.database_url, args.backend))
        return
    uvicorn.run(
        create_front(args.backend, args.cart_backend),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
