"""Catalog routes (API.md "Catalog"): products, categories, reviews and the wishlist.

Rules the frontend can rely on (the catalog service enforces them; the gateway only shapes JSON):
- Product ids must be UUIDs: a malformed id is `400 VALIDATION_ERROR` (`details.fields.productId`);
  a well-formed unknown id is `404 PRODUCT_NOT_FOUND`.
- Listing and search show ACTIVE products only. `GET /products/{id}` shows ACTIVE products to
  anyone, DRAFT products only to admins and the seller who owns them (404 for everyone else),
  and ARCHIVED products to nobody (404). `BatchGetProducts` (internal) still resolves archived
  products for old orders and carts.
- Writes: ADMIN on every product; a SELLER only on the products it created (`sellerId`): another
  seller's product is `403 FORBIDDEN` (`404` if it cannot even see it, i.e. a DRAFT); CUSTOMER is 403.
- `category` filters include the category's subcategories; `productCount` counts ACTIVE products
  of the category and its subcategories.
- `Idempotency-Key` on `POST /products` and `POST /products/{id}/stock-adjustments`: a repeat
  by the same user returns the stored result; the key with another body is `409 IDEMPOTENCY_KEY_REUSED`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, Field, field_validator
from pydantic.alias_generators import to_camel

from gateway.deps import (
    ApiModel,
    GatewayState,
    Principal,
    current_user,
    get_state,
    ok,
    optional_user,
    page,
    require_admin,
    require_roles,
    rfc3339,
    user_metadata,
)
from gateway.errors import ApiError
from gateway.responses import dumps
from shop.catalog.v1 import catalog_pb2
from shop.lib import idempotency
from shop.lib.enums import EnumNames

router = APIRouter(prefix="/api/v1", tags=["catalog"])

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
require_writer = require_roles("ADMIN", "SELLER")

SORTS = {
    "relevance": catalog_pb2.PRODUCT_SORT_RELEVANCE,
    "newest": catalog_pb2.PRODUCT_SORT_NEWEST,
    "price": catalog_pb2.PRODUCT_SORT_PRICE_ASC,
    "-price": catalog_pb2.PRODUCT_SORT_PRICE_DESC,
    "rating": catalog_pb2.PRODUCT_SORT_RATING,
    "name": catalog_pb2.PRODUCT_SORT_NAME,
}
PRODUCT_STATUSES = EnumNames(catalog_pb2.ProductStatus)
PRODUCT_ID_DOC = "The product's id (a UUID; anything else is 400)."


# -- documented responses -------------------------------------------------------------------------

class RatingOut(BaseModel):
    average: float = Field(description="Mean of the review ratings, 2 decimals; 0 without reviews.")
    count: int


class ProductOut(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    priceCents: int  # noqa: N815 - the public JSON names are camelCase
    compareAtPriceCents: int | None = Field(description="The 'was' price; null when none.")  # noqa: N815
    currency: str
    categorySlug: str  # noqa: N815
    brand: str | None
    images: list[str]
    stock: int
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"]
    sellerId: str | None = Field(description="The owning seller; null for shop-owned products.")  # noqa: N815
    rating: RatingOut
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815


class PageOut(BaseModel):
    nextPageToken: str | None  # noqa: N815
    totalSize: int  # noqa: N815


class ProductEnvelope(BaseModel):
    data: ProductOut


class ProductPage(BaseModel):
    data: list[ProductOut]
    page: PageOut


class CategoryOut(BaseModel):
    slug: str
    name: str
    parentSlug: str | None  # noqa: N815
    productCount: int = Field(description="ACTIVE products in it and its subcategories.")  # noqa: N815


class CategoryEnvelope(BaseModel):
    data: CategoryOut


class CategoryList(BaseModel):
    data: list[CategoryOut]
    page: PageOut


class ReviewOut(BaseModel):
    id: str
    productId: str  # noqa: N815
    userId: str  # noqa: N815
    rating: int
    title: str
    body: str
    verifiedPurchase: bool = Field(description="The user bought the product in a paid order.")  # noqa: N815
    createdAt: str  # noqa: N815


class ReviewEnvelope(BaseModel):
    data: ReviewOut


class ReviewPage(BaseModel):
    data: list[ReviewOut]
    page: PageOut


class StockOut(BaseModel):
    stock: int


class StockEnvelope(BaseModel):
    data: StockOut


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. PRODUCT_NOT_FOUND.")
    message: str
    details: dict[str, Any] | None = Field(default=None, description="e.g. fields, productIds.")
    requestId: str  # noqa: N815


class ErrorEnvelope(BaseModel):
    error: ErrorBody


_ERRORS = {
    400: "VALIDATION_ERROR (details.fields; malformed ids too) or INVALID_PAGE_TOKEN",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN: not your product, or not your role",
    404: "PRODUCT_NOT_FOUND (unknown, archived, or a draft you cannot see)",
    409: "SKU_TAKEN, CATEGORY_EXISTS, REVIEW_EXISTS, INSUFFICIENT_STOCK, WISHLIST_FULL",
    422: "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key was used with another body",
}


def errors(*statuses: int) -> dict[int | str, Any]:
    """`responses=` entries documenting the error envelope for a route's error statuses."""
    return {status: {"model": ErrorEnvelope, "description": _ERRORS[status]} for status in statuses}


# -- request bodies -------------------------------------------------------------------------------

def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


class CatalogBody(ApiModel):
    """JSON may carry lone UTF-16 surrogates (`"\\ud800"`) that no UTF-8 string can hold: 400."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_surrogates(cls, value: Any) -> Any:
        if _has_surrogate(value):
            raise ValueError("is not valid Unicode text")
        return value


class ProductCreateBody(CatalogBody):
    sku: str = Field(description="Unique; letters, digits, '.', '_', '-'; at most 64 characters.")
    name: str = Field(description="1..200 characters.")
    description: str = Field(default="", description="At most 5000 characters.")
    price_cents: int = Field(ge=-INT64_MAX, le=INT64_MAX, description="> 0, in minor units.")
    compare_at_price_cents: int | None = Field(default=None, ge=-INT64_MAX, le=INT64_MAX,
                                               description="Greater than priceCents when given.")
    currency: str = Field(description="ISO 4217, 3 upper-case letters.")
    category_slug: str = Field(description="An existing category.")
    brand: str | None = Field(default=None, description="At most 100 characters.")
    images: list[str] = Field(default_factory=list, max_length=100, description="At most 10 http(s) URLs.")
    stock: int = Field(ge=-INT32_MAX, le=INT32_MAX, description=">= 0.")
    status: Literal["ACTIVE", "DRAFT"] = Field(default="ACTIVE")


class ProductUpdateBody(CatalogBody):
    """Every field optional; only the fields sent change. `compareAtPriceCents: null` and
    `brand: null` clear them. Stock changes go through stock adjustments."""

    sku: str | None = None
    name: str | None = None
    description: str | None = None
    price_cents: int | None = Field(default=None, ge=-INT64_MAX, le=INT64_MAX)
    compare_at_price_cents: int | None = Field(default=None, ge=-INT64_MAX, le=INT64_MAX)
    currency: str | None = None
    category_slug: str | None = None
    brand: str | None = None
    images: list[str] | None = Field(default=None, max_length=100)
    status: Literal["ACTIVE", "DRAFT"] | None = None


class StockAdjustmentBody(CatalogBody):
    delta: int = Field(ge=-INT32_MAX, le=INT32_MAX, description="Non-zero change of the stock.")
    reason: str = Field(description="Why (1..200 characters), kept in the audit trail.")


class CategoryCreateBody(CatalogBody):
    slug: str = Field(description="Lower-case letters and digits separated by hyphens, at most 64.")
    name: str = Field(description="1..100 characters.")
    parent_slug: str | None = Field(default=None, description="An existing category.")


class ReviewCreateBody(CatalogBody):
    rating: int = Field(ge=-INT32_MAX, le=INT32_MAX, description="1..5.")
    title: str = Field(default="", description="At most 120 characters.")
    body: str = Field(default="", description="At most 5000 characters.")


# -- mapping --------------------------------------------------------------------------------------

def product_json(product: catalog_pb2.Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "priceCents": product.price_cents,
        "compareAtPriceCents": product.compare_at_price_cents or None,
        "currency": product.currency_code,
        "categorySlug": product.category_slug,
        "brand": product.brand or None,
        "images": list(product.images),
        "stock": product.stock,
        "status": PRODUCT_STATUSES.name(product.status),
        "sellerId": product.seller_id or None,
        "rating": {"average": round(product.rating_average, 2), "count": product.rating_count},
        "createdAt": rfc3339(product.create_time),
        "updatedAt": rfc3339(product.update_time),
    }


def category_json(category: catalog_pb2.Category) -> dict[str, Any]:
    return {
        "slug": category.slug,
        "name": category.name,
        "parentSlug": category.parent_slug or None,
        "productCount": category.product_count,
    }


def review_json(review: catalog_pb2.Review) -> dict[str, Any]:
    return {
        "id": review.id,
        "productId": review.product_id,
        "userId": review.user_id,
        "rating": review.rating,
        "title": review.title,
        "body": review.body,
        "verifiedPurchase": review.verified_purchase,
        "createdAt": rfc3339(review.create_time),
    }


def idempotency_key(value: str | None) -> str:
    return idempotency.clean_key(value) or ""


ProductId = Path(alias="productId", description=PRODUCT_ID_DOC)
IdempotencyKey = Header(None, alias="Idempotency-Key", description="Makes a repeat return the first result.")


# -- products -------------------------------------------------------------------------------------

@router.get("/products", summary="List and search ACTIVE products", response_model=ProductPage, responses=errors(400))
async def list_products(
    q: str = Query("", max_length=200, description="Words matched against name, description, brand, category."),
    category: str = Query("", max_length=64, description="Category slug (includes its subcategories)."),
    brand: str = Query("", max_length=100, description="Exact brand, case-insensitive."),
    min_price_cents: int | None = Query(None, alias="minPriceCents", ge=0, le=INT64_MAX),
    max_price_cents: int | None = Query(None, alias="maxPriceCents", ge=0, le=INT64_MAX),
    in_stock: bool = Query(False, alias="inStock", description="true: only products with stock > 0."),
    sort: Literal["relevance", "newest", "price", "-price", "rating", "name"] | None = Query(
        None, description="Default: relevance with q, else newest. price = ascending, -price = descending."
    ),
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken", max_length=2048),
    state: GatewayState = Depends(get_state),
):
    """Only ACTIVE products. `q` matches every word (case-insensitive, English stemming on
    PostgreSQL) in name, description, brand and category names. Keyset pagination: pass
    `nextPageToken` back unchanged with the same filters; a forged token or one from other filters
    is `400 INVALID_PAGE_TOKEN`. `totalSize` is exact."""
    request = catalog_pb2.ListProductsRequest(
        page_size=page_size,
        page_token=page_token,
        query=q,
        category_slug=category,
        brand=brand,
        in_stock_only=in_stock,
        sort=SORTS[sort] if sort else catalog_pb2.PRODUCT_SORT_UNSPECIFIED,
    )
    if min_price_cents is not None:
        request.min_price_cents = min_price_cents
    if max_price_cents is not None:
        request.max_price_cents = max_price_cents
    response = await state.clients.catalog.ListProducts(request)
    return page([product_json(p) for p in response.products], response.next_page_token, response.total_size)


@router.get("/products/{productId}", summary="One product (404 for unknown or archived)",
            response_model=ProductEnvelope, responses=errors(400, 404))
async def get_product(
    product_id: str = ProductId,
    principal: Principal | None = Depends(optional_user),
    state: GatewayState = Depends(get_state),
):
    """ACTIVE products for anyone; DRAFT only for admins and the owning seller; ARCHIVED for
    nobody. Otherwise `404 PRODUCT_NOT_FOUND`. A malformed id is `400 VALIDATION_ERROR`.
    Without a token the answer may come from the gateway's read cache (at most
    `SHOP_PRODUCT_CACHE_TTL_SECONDS` old; writes through this gateway drop it at once)."""
    cache = state.product_cache if principal is None and state.product_cache.enabled else None
    if cache is not None and (body := cache.get(product_id.lower())) is not None:
        return Response(body, media_type="application/json")
    response = await state.clients.catalog.GetProduct(
        catalog_pb2.GetProductRequest(product_id=product_id), metadata=user_metadata(principal)
    )
    body = dumps({"data": product_json(response.product)})
    if cache is not None and response.product.status == catalog_pb2.PRODUCT_STATUS_ACTIVE:
        cache.put(response.product.id, body)
    return Response(body, media_type="application/json")


@router.post("/products", summary="Create a product (admin, seller; a seller owns it)", status_code=201,
             response_model=ProductEnvelope, responses=errors(400, 401, 403, 409, 422))
async def create_product(
    body: ProductCreateBody,
    key: str | None = IdempotencyKey,
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
):
    """A SELLER becomes the product's owner (`sellerId`); admin-created products have no seller.
    `Idempotency-Key` makes a repeat by the same user return the same product."""
    if body.compare_at_price_cents is not None and body.compare_at_price_cents <= 0:
        raise ApiError.validation({"compareAtPriceCents": ["must be greater than 0"]})
    request = catalog_pb2.CreateProductRequest(
        request_id=idempotency_key(key),
        sku=body.sku,
        name=body.name,
        description=body.description,
        price_cents=body.price_cents,
        compare_at_price_cents=body.compare_at_price_cents or 0,
        currency_code=body.currency,
        category_slug=body.category_slug,
        brand=body.brand or "",
        images=body.images,
        stock=body.stock,
        status=PRODUCT_STATUSES.value(body.status),
    )
    response = await state.clients.catalog.CreateProduct(request, metadata=principal.metadata)
    return ok(product_json(response.product), 201)


@router.patch("/products/{productId}", summary="Partially update a product (admin, owning seller)",
              response_model=ProductEnvelope, responses=errors(400, 401, 403, 404, 409))
async def update_product(
    body: ProductUpdateBody,
    product_id: str = ProductId,
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
):
    """Only the fields sent change; `compareAtPriceCents: null` and `brand: null` clear them;
    `status` may be ACTIVE or DRAFT (DELETE archives). Another seller's product is `403`
    (`404` when it is a draft it cannot see)."""
    request = catalog_pb2.UpdateProductRequest(product_id=product_id)
    sent = body.model_fields_set
    nullable = {"compare_at_price_cents", "brand", "description"}
    errors = {
        to_camel(name): ["must not be null"]
        for name in sent
        if getattr(body, name) is None and name not in nullable
    }
    if errors:
        raise ApiError.validation(errors)
    for name in ("sku", "name", "description", "price_cents", "category_slug"):
        if name in sent:
            value = getattr(body, name)
            setattr(request, name, "" if value is None else value)
    if "currency" in sent and body.currency is not None:  # null was refused above
        request.currency_code = body.currency
    if "brand" in sent:
        request.brand = body.brand or ""
    if "compare_at_price_cents" in sent:
        if body.compare_at_price_cents is not None and body.compare_at_price_cents <= 0:
            raise ApiError.validation({"compareAtPriceCents": ["must be greater than 0 (null clears it)"]})
        request.compare_at_price_cents = body.compare_at_price_cents or 0
    if "images" in sent:
        request.update_images = True
        request.images.extend(body.images or [])
    if "status" in sent and body.status is not None:  # null was refused above
        request.status = PRODUCT_STATUSES.value(body.status)
    response = await state.clients.catalog.UpdateProduct(request, metadata=principal.metadata)
    state.product_cache.drop(response.product.id)
    return ok(product_json(response.product))


@router.delete("/products/{productId}", summary="Archive a product (soft delete; admin, owning seller)",
               status_code=204, response_class=Response, responses=errors(400, 401, 403, 404))
async def delete_product(
    product_id: str = ProductId,
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
):
    """Soft delete: the product becomes ARCHIVED, disappears from the catalog (GET is 404) and
    stays resolvable for old orders. Deleting an archived product again is `204`."""
    await state.clients.catalog.DeleteProduct(
        catalog_pb2.DeleteProductRequest(product_id=product_id), metadata=principal.metadata
    )
    state.product_cache.drop(product_id.lower())
    return Response(status_code=204)


@router.post("/products/{productId}/stock-adjustments",
             summary="Adjust the stock by delta (admin, owning seller); never below 0",
             response_model=StockEnvelope, responses=errors(400, 401, 403, 404, 409, 422))
async def adjust_stock(
    body: StockAdjustmentBody,
    product_id: str = ProductId,
    key: str | None = IdempotencyKey,
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
):
    """Adds `delta` (negative removes) atomically; a result below 0 is `409 INSUFFICIENT_STOCK`
    and changes nothing. Each adjustment is kept with its reason."""
    response = await state.clients.catalog.AdjustStock(
        catalog_pb2.AdjustStockRequest(
            product_id=product_id, delta=body.delta, reason=body.reason, request_id=idempotency_key(key)
        ),
        metadata=principal.metadata,
    )
    state.product_cache.drop(product_id.lower())
    return ok({"stock": response.stock})


# -- categories -----------------------------------------------------------------------------------

@router.get("/categories", summary="Every category with its parent and ACTIVE product count",
            response_model=CategoryList)
async def list_categories(state: GatewayState = Depends(get_state)):
    response = await state.clients.catalog.ListCategories(catalog_pb2.ListCategoriesRequest())
    items = [category_json(c) for c in response.categories]
    return page(items, "", len(items))


@router.post("/categories", summary="Create a category (admin)", status_code=201, response_model=CategoryEnvelope,
             responses=errors(400, 401, 403, 409))
async def create_category(
    body: CategoryCreateBody,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
    response = await state.clients.catalog.CreateCategory(
        catalog_pb2.CreateCategoryRequest(slug=body.slug, name=body.name, parent_slug=body.parent_slug or ""),
        metadata=principal.metadata,
    )
    return ok(category_json(response.category), 201)


# -- reviews --------------------------------------------------------------------------------------

@router.get("/products/{productId}/reviews", summary="A product's reviews, newest first",
            response_model=ReviewPage, responses=errors(400, 404))
async def list_reviews(
    product_id: str = ProductId,
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken", max_length=2048),
    principal: Principal | None = Depends(optional_user),
    state: GatewayState = Depends(get_state),
):
    response = await state.clients.catalog.ListReviews(
        catalog_pb2.ListReviewsRequest(product_id=product_id, page_size=page_size, page_token=page_token),
        metadata=user_metadata(principal),
    )
    return page([review_json(r) for r in response.reviews], response.next_page_token, response.total_size)


@router.post("/products/{productId}/reviews", summary="Review a product (one per user)", status_code=201,
             response_model=ReviewEnvelope, responses=errors(400, 401, 404, 409))
async def create_review(
    body: ReviewCreateBody,
    product_id: str = ProductId,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
):
    """One review per user and product (`409 REVIEW_EXISTS`). `verifiedPurchase` is true when
    the user bought the product in a paid order. The product's rating updates at once."""
    response = await state.clients.catalog.CreateReview(
        catalog_pb2.CreateReviewRequest(product_id=product_id, rating=body.rating, title=body.title, body=body.body),
        metadata=principal.metadata,
    )
    state.product_cache.drop(product_id.lower())  # its rating changed
    return ok(review_json(response.review), 201)


# -- wishlist -------------------------------------------------------------------------------------

@router.get("/wishlist", summary="The caller's saved products, most recently saved first",
            response_model=ProductPage, responses=errors(401))
async def list_wishlist(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.catalog.ListWishlistItems(
        catalog_pb2.ListWishlistItemsRequest(), metadata=principal.metadata
    )
    items = [product_json(item.product) for item in response.items]
    return page(items, "", len(items))


@router.put("/wishlist/{productId}", summary="Save a product to the wishlist (idempotent)", status_code=204,
            response_class=Response, responses=errors(400, 401, 404, 409))
async def add_wishlist_item(
    product_id: str = ProductId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    await state.clients.catalog.AddWishlistItem(
        catalog_pb2.AddWishlistItemRequest(product_id=product_id), metadata=principal.metadata
    )
    return Response(status_code=204)


@router.delete("/wishlist/{productId}", summary="Remove a product from the wishlist (idempotent)",
               status_code=204, response_class=Response, responses=errors(400, 401))
async def remove_wishlist_item(
    product_id: str = ProductId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    await state.clients.catalog.RemoveWishlistItem(
        catalog_pb2.RemoveWishlistItemRequest(product_id=product_id), metadata=principal.metadata
    )
    return Response(status_code=204)
