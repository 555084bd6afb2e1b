"""The architecture's floor, for `make bench`: the baseline's one read, split the way the shop is
split, with none of the shop's code.

Two processes: a *front* (FastAPI + uvicorn, exactly the baseline's settings) that calls a *back*
over one gRPC hop (grpc.aio, the catalog's real `GetProduct` messages) which runs the baseline's
one SQL query and fills the `Product` proto; the front turns the proto into the same JSON. No
interceptors, no caller identity, no deadline bookkeeping, no logging, no metrics, no response
validation: only what any FastAPI-gateway-plus-Python-gRPC design pays for one read on this
machine. Its ratio to the baseline is the ceiling the shop's `product by id` can approach, which
is why the bench measures it beside both (scenario `hop`).

    python -m bench.hop back --port 18101 --database-url postgresql://postgres@127.0.0.1:5432/db
    python -m bench.hop front --port 18102 --backend 127.0.0.1:18101
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench.baseline import POOL_SIZE, QUERY, rfc3339
from shop.catalog.v1 import catalog_pb2

STATUS = {name: catalog_pb2.ProductStatus.Value(f"PRODUCT_STATUS_{name}") for name in ("ACTIVE", "DRAFT", "ARCHIVED")}
STATUS_NAME = {value: name for name, value in STATUS.items()}


GET_PRODUCT = "/shop.catalog.v1.CatalogService/GetProduct"


class Back:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool: Any = pool  # rows are dicts (dict_row), which the pool's generic type cannot say

    async def get_product(self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext):
        async with self.pool.connection() as conn:
            row = await (await conn.execute(QUERY, (request.product_id,))).fetchone()
        if row is None or row["status"] == "ARCHIVED":
            await context.abort(grpc.StatusCode.NOT_FOUND, "not found")
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
        return catalog_pb2.GetProductResponse(product=product)


async def serve_back(port: int, database_url: str) -> None:
    pool = AsyncConnectionPool(
        database_url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": True},
    )
    await pool.open(wait=True)
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        Back(pool).get_product,
        request_deserializer=catalog_pb2.GetProductRequest.FromString,
        response_serializer=catalog_pb2.GetProductResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("shop.catalog.v1.CatalogService", {"GetProduct": handler})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def create_front(backend: str) -> FastAPI:
    calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        channel = grpc.aio.insecure_channel(backend)
        calls["get_product"] = channel.unary_unary(
            GET_PRODUCT,
            request_serializer=catalog_pb2.GetProductRequest.SerializeToString,
            response_deserializer=catalog_pb2.GetProductResponse.FromString,
        )
        yield
        await channel.close()

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
        return JSONResponse(
            {
                "data": {
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
            }
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("back", "front"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", help="the back's database")
    parser.add_argument("--backend", help="the front's back, host:port")
    args = parser.parse_args()
    if args.role == "back":
        import uvloop

        uvloop.install()
        asyncio.run(serve_back(args.port, args.database_url))
        return
    uvicorn.run(
        create_front(args.backend),
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
