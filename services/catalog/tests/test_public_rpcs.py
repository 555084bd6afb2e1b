"""The public RPCs called directly over gRPC (what the gateway cannot send for us): missing or
wrong credentials, unknown enum values, bad page sizes and tokens. Nothing changes on failure."""

from __future__ import annotations

import uuid

import grpc

from services.catalog.tests.helpers import rpc_error
from shop.catalog.v1 import catalog_pb2 as R


def bearer(user) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {user['tokens']['accessToken']}")]


def create_request(catalog, **overrides):
    return R.CreateProductRequest(
        **{
            "sku": f"G-{uuid.uuid4().hex[:10]}",
            "name": "Direct",
            "price_cents": 500,
            "currency_code": "USD",
            "category_slug": catalog.category,
            "stock": 1,
            **overrides,
        }
    )


async def test_writes_need_the_right_user(suite, catalog):
    await catalog.product()  # makes the category
    stub = suite.stub("catalog")
    customer = await suite.register()
    before = suite.sql("catalog", "SELECT count(*) FROM products")
    error = await rpc_error(stub.CreateProduct(create_request(catalog)))
    assert error.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(stub.CreateProduct(create_request(catalog), metadata=bearer(customer)))
    assert error.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_error(
        stub.CreateProduct(create_request(catalog), metadata=[("authorization", "Bearer not.a.jwt")])
    )
    assert error.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(
        stub.CreateCategory(R.CreateCategoryRequest(slug="x-y", name="X"), metadata=bearer(customer))
    )
    assert error.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_error(stub.CreateReview(R.CreateReviewRequest(product_id=str(uuid.uuid4()), rating=5)))
    assert error.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_error(stub.ListWishlistItems(R.ListWishlistItemsRequest()))
    assert error.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    assert suite.sql("catalog", "SELECT count(*) FROM products") == before


async def test_unknown_enum_values_and_bad_pages(suite, catalog):
    await catalog.product()
    stub = suite.stub("catalog")
    admin = await suite.admin()
    before = suite.sql("catalog", "SELECT count(*) FROM products")
    error = await rpc_error(stub.CreateProduct(create_request(catalog, status=99), metadata=bearer(admin)))
    assert error.http_status == 400 and "status" in error.fields
    error = await rpc_error(
        stub.CreateProduct(create_request(catalog, status=R.PRODUCT_STATUS_ARCHIVED), metadata=bearer(admin))
    )
    assert error.http_status == 400 and "status" in error.fields
    assert suite.sql("catalog", "SELECT count(*) FROM products") == before
    for request in (
        R.ListProductsRequest(sort=R.ProductSort.ValueType(42)),  # no such sort
        R.ListProductsRequest(page_size=-1),
        R.ListProductsRequest(page_size=101),
        R.ListProductsRequest(min_price_cents=-1),
        R.ListProductsRequest(query="q" * 201),
    ):
        error = await rpc_error(stub.ListProducts(request))
        assert error.http_status == 400, request
    # a reviews token is not a products token, and vice versa
    product = await catalog.product()
    users = [await suite.register() for _ in range(2)]
    for user in users:
        await stub.CreateReview(R.CreateReviewRequest(product_id=product, rating=4), metadata=bearer(user))
    reviews = await stub.ListReviews(R.ListReviewsRequest(product_id=product, page_size=1))
    assert reviews.next_page_token and reviews.total_size == 2
    error = await rpc_error(stub.ListProducts(R.ListProductsRequest(page_token=reviews.next_page_token)))
    assert error.code == "INVALID_PAGE_TOKEN"
    products = await stub.ListProducts(R.ListProductsRequest(page_size=1))
    error = await rpc_error(
        stub.ListReviews(R.ListReviewsRequest(product_id=product, page_token=products.next_page_token))
    )
    assert error.code == "INVALID_PAGE_TOKEN"
