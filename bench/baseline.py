"""The bare baseline of `make bench`: one process, FastAPI + uvicorn (uvloop, httptools, one
worker) and one SQL query per request through a psycopg 3 async connection pool.

`GET /products/{id}` reads the same `products` row the catalog service serves (its database, same
columns) and answers JSON shaped like the shop's `GET /api/v1/products/{id}`. No gateway hop, no
gRPC: what any Python web service on this machine pays for one query, to compare the shop with.

    python -m bench.baseline --port 18100 --database-url postgresql://postgres@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

QUERY = (
    "SELECT id, sku, name, description, price_cents, compare_at_price_cents, currency, category_slug,"
    " brand, images, stock, status, seller_id, rating_average, rating_count, created_at, updated_at"
    " FROM products WHERE id = %s"
)
POOL_SIZE = 10


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def product_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "sku": row["sku"],
        "name": row["name"],
        "description": row["description"],
        "priceCents": row["price_cents"],
        "compareAtPriceCents": row["compare_at_price_cents"],
        "currency": row["currency"],
        "categorySlug": row["category_slug"],
        "brand": row["brand"],
        "images": row["images"] or [],
        "stock": row["stock"],
        "status": row["status"],
        "sellerId": str(row["seller_id"]) if row["seller_id"] else None,
        "rating": {"average": round(row["rating_average"], 2), "count": row["rating_count"]},
        "createdAt": rfc3339(row["created_at"]),
        "updatedAt": rfc3339(row["updated_at"]),
    }


def create_app(database_url: str) -> FastAPI:
    # autocommit: one statement per request (no BEGIN before it, no ROLLBACK when the connection
    # goes back to the pool), as lean as the shop's own read path; a slower baseline would flatter us.
    pool = AsyncConnectionPool(
        database_url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": True},
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/products/{product_id}")
    async def get_product(product_id: str) -> JSONResponse:
        async with pool.connection() as conn:
            row = await (await conn.execute(QUERY, (product_id,))).fetchone()
        if row is None or row["status"] == "ARCHIVED":
            return JSONResponse({"error": {"code": "NOT_FOUND"}}, status_code=404)
        return JSONResponse({"data": product_json(row)})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.database_url),
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
