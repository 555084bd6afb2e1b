"""Catalog routes (API.md "Catalog"): products, categories, reviews and the wishlist. The shapes,
their mapping from the protos and the request bodies are in gateway/schemas/catalog.py.

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
  by the same user returns the stored result; the key with another body is `422 IDEMPOTENCY_KEY_REUSED`.
- `GET /products/{id}` (and PATCH) answers an `ETag`: the product's version, which every change
  through the API (fields, status, stock adjustments) moves; stock sold by checkouts and new
  reviews do not. `PATCH` with `If-Match` is refused with 412 when the version moved.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic.alias_generators import to_camel

from gateway.deps import (
    GatewayState,
    Principal,
    current_user,
    get_state,
    optional_user,
    require_admin,
    require_roles,
    user_metadata,
)
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.schemas.catalog import (
    INT64_MAX,
    PRODUCT_STATUSES,
    SORTS,
    Category,
    CategoryCreateBody,
    Product,
    ProductCreateBody,
    ProductUpdateBody,
    Review,
    ReviewCreateBody,
    SortName,
    StockAdjustmentBody,
    StockLevel,
    category_json,
    etag_version,
    product_etag,
    product_json,
    review_json,
)
from gateway.schemas.common import IDEMPOTENCY_KEY_RULE, UUID_RULE, data, envelope, page, page_of, render
from shop.catalog.v1 import catalog_pb2
from shop.lib import idempotency

router = APIRouter(prefix="/api/v1", tags=["catalog"])

require_writer = require_roles("ADMIN", "SELLER")
PRODUCT_ID_DOC = "The product's id (a UUID; anything else is 400)."
ProductEnvelope = envelope(Product)
ETAG_HEADER = {"ETag": {"description": "The product's version, for If-Match.", "schema": {"type": "string"}}}


def idempotency_key(value: str | None) -> str:
    return idempotency.clean_key(value) or ""


ProductId = Path(alias="productId", description=PRODUCT_ID_DOC, json_schema_extra=UUID_RULE)
IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    description="Makes a repeat return the first result (1..128 printable ASCII characters).",
    json_schema_extra=IDEMPOTENCY_KEY_RULE,
)
NOT_FOUND = "PRODUCT_NOT_FOUND (unknown, archived, or a draft you cannot see)"


# -- products -------------------------------------------------------------------------------------


@router.get(
    "/products",
    operation_id="catalog-list-products",
    summary="List and search ACTIVE products",
    response_model=page_of(Product),
    responses=errors(400, e400="VALIDATION_ERROR or INVALID_PAGE_TOKEN"),
)
async def list_products(
    q: str = Query("", max_length=200, description="Words matched against name, description, brand, category."),
    category: str = Query("", max_length=64, description="Category slug (includes its subcategories)."),
    brand: str = Query("", max_length=100, description="Exact brand, case-insensitive."),
    min_price_cents: int | None = Query(None, alias="minPriceCents", ge=0, le=INT64_MAX),
    max_price_cents: int | None = Query(None, alias="maxPriceCents", ge=0, le=INT64_MAX),
    in_stock: bool = Query(False, alias="inStock", description="true: only products with stock > 0."),
    sort: SortName | None = Query(
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


@router.get(
    "/products/{productId}",
    operation_id="catalog-get-product",
    summary="One product (404 for unknown or archived)",
    response_model=ProductEnvelope,
    responses={200: {"headers": ETAG_HEADER}, **errors(404, e404=NOT_FOUND)},
)
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
    if cache is not None and (hit := cache.get(product_id.lower())) is not None:
        etag, body = hit
    else:
        response = await state.clients.catalog.GetProduct(
            catalog_pb2.GetProductRequest(product_id=product_id), metadata=user_metadata(principal)
        )
        # Validated against the documented shape once, then kept encoded (the read cache).
        etag, body = product_etag(response.product), render(ProductEnvelope, data(product_json(response.product)))
        if cache is not None and response.product.status == catalog_pb2.PRODUCT_STATUS_ACTIVE:
            cache.put(response.product.id, (etag, body))
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.post(
    "/products",
    operation_id="catalog-create-product",
    summary="Create a product (admin, seller; a seller owns it)",
    status_code=201,
    response_model=ProductEnvelope,
    responses=errors(403, 409, 422, e409="SKU_TAKEN", e403="FORBIDDEN: not an admin or seller"),
)
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
    return data(product_json(response.product))


def update_request(product_id: str, body: ProductUpdateBody) -> catalog_pb2.UpdateProductRequest:
    """Only the fields sent; null clears the nullable ones and is refused for the others."""
    request = catalog_pb2.UpdateProductRequest(product_id=product_id)
    sent = body.model_fields_set
    nullable = {"compare_at_price_cents", "brand", "description"}
    problems = {
        to_camel(name): ["must not be null"] for name in sent if getattr(body, name) is None and name not in nullable
    }
    if problems:
        raise ApiError.validation(problems)
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
    return request


# A version no product has: what an If-Match that names none of ours (or a list of tags) expects.
NO_VERSION = Timestamp(seconds=0, nanos=0)


def precondition(if_match: str | None) -> Timestamp | None:
    """The product version If-Match names (None: unconditional, `*` included). A tag that names
    no version of ours can match nothing: the catalog answers 412 for it, after its own checks of
    the id (400), the product (404) and the caller (403), as for any stale tag."""
    if if_match is None or if_match.strip() == "*":
        return None
    version = etag_version(if_match)
    return NO_VERSION if version is None else version


@router.patch(
    "/products/{productId}",
    operation_id="catalog-update-product",
    summary="Partially update a product (admin, owning seller)",
    response_model=ProductEnvelope,
    responses={
        200: {"headers": ETAG_HEADER},
        **errors(
            403, 404, 409, 412, e404=NOT_FOUND, e409="SKU_TAKEN", e403="FORBIDDEN: not your product, or not your role"
        ),
    },
)
async def update_product(
    body: ProductUpdateBody,
    response: Response,
    product_id: str = ProductId,
    if_match: str | None = Header(
        None,
        alias="If-Match",
        description="The ETag of the product as read: the update "
        "is made only if it is still that version, else 412 PRECONDITION_FAILED.",
    ),
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
):
    """Only the fields sent change; `compareAtPriceCents: null` and `brand: null` clear them;
    `status` may be ACTIVE or DRAFT (DELETE archives). Another seller's product is `403`
    (`404` when it is a draft it cannot see). With `If-Match`, a product changed since it was read
    is `412 PRECONDITION_FAILED` and nothing changes (the check and the write are one transaction)."""
    request = update_request(product_id, body)
    expected = precondition(if_match)
    if expected is not None:
        request.expected_update_time.CopyFrom(expected)
    result = await state.clients.catalog.UpdateProduct(request, metadata=principal.metadata)
    state.product_cache.drop(result.product.id)
    response.headers["ETag"] = product_etag(result.product)
    return data(product_json(result.product))


@router.delete(
    "/products/{productId}",
    operation_id="catalog-archive-product",
    summary="Archive a product (soft delete; admin, owning seller)",
    status_code=204,
    response_class=Response,
    responses=errors(403, 404, e404=NOT_FOUND, e403="FORBIDDEN: not your product, or not your role"),
)
async def delete_product(
    product_id: str = ProductId,
    principal: Principal = Depends(require_writer),
    state: GatewayState = Depends(get_state),
) -> None:
    """Soft delete: the product becomes ARCHIVED, disappears from the catalog (GET is 404) and
    stays resolvable for old orders. Deleting an archived product again is `204`."""
    await state.clients.catalog.DeleteProduct(
        catalog_pb2.DeleteProductRequest(product_id=product_id), metadata=principal.metadata
    )
    state.product_cache.drop(product_id.lower())


@router.post(
    "/products/{productId}/stock-adjustments",
    operation_id="catalog-adjust-stock",
    summary="Adjust the stock by delta (admin, owning seller); never below 0",
    response_model=envelope(StockLevel),
    responses=errors(403, 404, 409, 422, e404=NOT_FOUND, e409="INSUFFICIENT_STOCK"),
)
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
    return data({"stock": response.stock})


# -- categories -----------------------------------------------------------------------------------


@router.get(
    "/categories",
    operation_id="catalog-list-categories",
    summary="Every category with its parent and ACTIVE product count",
    response_model=page_of(Category),
)
async def list_categories(state: GatewayState = Depends(get_state)):
    response = await state.clients.catalog.ListCategories(catalog_pb2.ListCategoriesRequest())
    items = [category_json(c) for c in response.categories]
    return page(items, "", len(items))


@router.post(
    "/categories",
    operation_id="catalog-create-category",
    summary="Create a category (admin)",
    status_code=201,
    response_model=envelope(Category),
    responses=errors(
        400, 403, 409, e400="VALIDATION_ERROR (a parentSlug that names no category too)", e409="CATEGORY_EXISTS"
    ),
)
async def create_category(
    body: CategoryCreateBody,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
    if body.parent_slug == "":  # the proto's "" means "no parent": the JSON says so with null only
        raise ApiError.validation({"parentSlug": ["must be a category's slug (null or left out for none)"]})
    response = await state.clients.catalog.CreateCategory(
        catalog_pb2.CreateCategoryRequest(slug=body.slug, name=body.name, parent_slug=body.parent_slug or ""),
        metadata=principal.metadata,
    )
    return data(category_json(response.category))


# -- reviews --------------------------------------------------------------------------------------


@router.get(
    "/products/{productId}/reviews",
    operation_id="catalog-list-reviews",
    summary="A product's reviews, newest first",
    response_model=page_of(Review),
    responses=errors(404, e404=NOT_FOUND),
)
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


@router.post(
    "/products/{productId}/reviews",
    operation_id="catalog-create-review",
    summary="Review a product (one per user)",
    status_code=201,
    response_model=envelope(Review),
    responses=errors(404, 409, e404=NOT_FOUND, e409="REVIEW_EXISTS"),
)
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
    return data(review_json(response.review))


# -- wishlist -------------------------------------------------------------------------------------


@router.get(
    "/wishlist",
    operation_id="catalog-list-wishlist",
    summary="The caller's saved products, most recently saved first",
    response_model=page_of(Product),
)
async def list_wishlist(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.catalog.ListWishlistItems(
        catalog_pb2.ListWishlistItemsRequest(), metadata=principal.metadata
    )
    items = [product_json(item.product) for item in response.items]
    return page(items, "", len(items))


@router.put(
    "/wishlist/{productId}",
    operation_id="catalog-add-to-wishlist",
    summary="Save a product to the wishlist (idempotent)",
    status_code=204,
    response_class=Response,
    responses=errors(404, 409, e404=NOT_FOUND, e409="WISHLIST_FULL"),
)
async def add_wishlist_item(
    product_id: str = ProductId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> None:
    await state.clients.catalog.AddWishlistItem(
        catalog_pb2.AddWishlistItemRequest(product_id=product_id), metadata=principal.metadata
    )


@router.delete(
    "/wishlist/{productId}",
    operation_id="catalog-remove-from-wishlist",
    summary="Remove a product from the wishlist (idempotent)",
    status_code=204,
    response_class=Response,
)
async def remove_wishlist_item(
    product_id: str = ProductId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> None:
    await state.clients.catalog.RemoveWishlistItem(
        catalog_pb2.RemoveWishlistItemRequest(product_id=product_id), metadata=principal.metadata
    )
