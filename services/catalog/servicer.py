"""RPC handlers of the catalog service: parse the request, check the caller, call the domain and
the repository, map the result to protos. No business rules live here."""

from __future__ import annotations

from datetime import datetime

from services.catalog import domain
from services.catalog.models import Category, Product, Review
from services.catalog.repository import CatalogRepository, ReservationView, invalid_page_token, product_not_found
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.context import ROLE_ADMIN, ROLE_SELLER, current_caller, require_role, require_service, require_user
from shop.lib.db import to_timestamp
from shop.lib.errors import PermissionDenied, ValidationError
from shop.lib.pagination import PageTokens, fingerprint, page_size

SORT_BY_ENUM = {
    catalog_pb2.PRODUCT_SORT_UNSPECIFIED: None,
    catalog_pb2.PRODUCT_SORT_RELEVANCE: "relevance",
    catalog_pb2.PRODUCT_SORT_NEWEST: "newest",
    catalog_pb2.PRODUCT_SORT_PRICE_ASC: "price",
    catalog_pb2.PRODUCT_SORT_PRICE_DESC: "-price",
    catalog_pb2.PRODUCT_SORT_RATING: "rating",
    catalog_pb2.PRODUCT_SORT_NAME: "name",
}
STATUS_TO_ENUM = {
    domain.ACTIVE: catalog_pb2.PRODUCT_STATUS_ACTIVE,
    domain.DRAFT: catalog_pb2.PRODUCT_STATUS_DRAFT,
    domain.ARCHIVED: catalog_pb2.PRODUCT_STATUS_ARCHIVED,
}
STATUS_FROM_ENUM = {value: key for key, value in STATUS_TO_ENUM.items()}
RESERVATION_TO_ENUM = {
    domain.RESERVED: catalog_pb2.RESERVATION_STATUS_RESERVED,
    domain.COMMITTED: catalog_pb2.RESERVATION_STATUS_COMMITTED,
    domain.RELEASED: catalog_pb2.RESERVATION_STATUS_RELEASED,
    domain.RESTOCKED: catalog_pb2.RESERVATION_STATUS_RESTOCKED,
}
# The public edge may not call internal RPCs even though it carries a service identity.
GATEWAY_SERVICE = "gateway"


def require_internal():
    caller = require_service()
    if caller.service == GATEWAY_SERVICE:
        raise PermissionDenied("This operation is internal to the shop's services.")
    return caller



def product_proto(product: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description or "",
        price_cents=product.price_cents,
        compare_at_price_cents=product.compare_at_price_cents or 0,
        currency_code=product.currency,
        category_slug=product.category_slug,
        brand=product.brand or "",
        images=list(product.images or []),
        stock=product.stock,
        status=STATUS_TO_ENUM[product.status],
        seller_id=product.seller_id or "",
        rating_average=float(product.rating_average or 0.0),
        rating_count=product.rating_count or 0,
        create_time=to_timestamp(product.created_at),
        update_time=to_timestamp(product.updated_at),
    )


def category_proto(category: Category, count: int) -> catalog_pb2.Category:
    return catalog_pb2.Category(
        slug=category.slug, name=category.name, parent_slug=category.parent_slug or "", product_count=count
    )


def review_proto(review: Review) -> catalog_pb2.Review:
    return catalog_pb2.Review(
        id=review.id,
        product_id=review.product_id,
        user_id=review.user_id,
        rating=review.rating,
        title=review.title or "",
        body=review.body or "",
        verified_purchase=review.verified_purchase,
        create_time=to_timestamp(review.created_at),
    )


def reservation_proto(view: ReservationView) -> catalog_pb2.Reservation:
    return catalog_pb2.Reservation(
        id=view.id,
        status=RESERVATION_TO_ENUM[view.status],
        lines=[catalog_pb2.StockLine(product_id=p, quantity=q) for p, q in view.lines],
        expire_time=to_timestamp(view.expires_at),
        priced_lines=[
            catalog_pb2.ReservedLine(
                product_id=line.product_id, quantity=line.quantity, sku=line.sku, name=line.name,
                unit_price_cents=line.unit_price_cents, currency_code=line.currency_code,
            )
            for line in view.priced_lines
        ],
    )


def _status_field(value: int, *, creating: bool) -> str | None:
    if value == catalog_pb2.PRODUCT_STATUS_UNSPECIFIED:
        return domain.ACTIVE if creating else None
    if value not in STATUS_FROM_ENUM:
        raise ValidationError.single("status", "is not a known status")
    return STATUS_FROM_ENUM[value]


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.repo: CatalogRepository = runtime.repository
        self.tokens = PageTokens(runtime.settings.page_token_secret)

    # -- products ------------------------------------------------------------------------------

    async def ListProducts(self, request, context):
        query = domain.product_query(
            query=request.query,
            category_slug=request.category_slug,
            brand=request.brand,
            min_price_cents=request.min_price_cents if request.HasField("min_price_cents") else None,
            max_price_cents=request.max_price_cents if request.HasField("max_price_cents") else None,
            in_stock_only=request.in_stock_only,
            sort=SORT_BY_ENUM.get(request.sort, "invalid"),
        )
        size = page_size(request.page_size)
        query_fp = fingerprint(kind="products", **query.fingerprint_fields())
        position = self.tokens.decode(request.page_token, query_fp)
        after = None
        if position is not None:
            if not isinstance(position.get("id"), str) or "k" not in position:
                raise invalid_page_token()
            after = (self.repo.parse_sort_key(query.sort, position["k"]), position["id"])
        page = await self.repo.list_products(query, size, after)
        next_token = (
            self.tokens.encode({"k": page.last_key, "id": page.last_id}, query_fp) if page.has_more else ""
        )
        return catalog_pb2.ListProductsResponse(
            products=[product_proto(p) for p in page.items], next_page_token=next_token, total_size=page.total
        )

    async def GetProduct(self, request, context):
        product_id = domain.parse_uuid(request.product_id)
        caller = current_caller()
        product = await self.repo.get_product(product_id)
        if product is None or not domain.can_see(product.status, product.seller_id, caller.user_id, caller.role):
            raise product_not_found()
        return catalog_pb2.GetProductResponse(product=product_proto(product))

    async def BatchGetProducts(self, request, context):
        require_service()
        ids = list(dict.fromkeys(pid.lower() for pid in request.product_ids))
        if len(ids) > domain.MAX_BATCH_IDS:
            raise ValidationError.single("productIds", f"at most {domain.MAX_BATCH_IDS} ids")
        # Malformed ids cannot exist: they are simply missing from the answer.
        products = await self.repo.batch_get([pid for pid in ids if domain.is_uuid(pid)])
        return catalog_pb2.BatchGetProductsResponse(products=[product_proto(p) for p in products])

    async def CreateProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        fields = domain.validate_product(
            {
                "sku": request.sku,
                "name": request.name,
                "description": request.description,
                "price_cents": request.price_cents,
                "compare_at_price_cents": request.compare_at_price_cents or None,
                "currency": request.currency_code,
                "category_slug": request.category_slug,
                "brand": request.brand,
                "images": list(request.images),
                "stock": request.stock,
                "status": _status_field(request.status, creating=True),
            },
            creating=True,
        )
        domain.check_prices(fields["price_cents"], fields["compare_at_price_cents"])
        request_id = domain.scoped_request_id(caller.user_id, domain.validate_request_id(request.request_id))
        seller_id = domain.owner_of_new_product(caller.user_id, caller.role)
        product = await self.repo.create_product(fields, seller_id, request_id)
        return catalog_pb2.CreateProductResponse(product=product_proto(product))

    async def UpdateProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = domain.parse_uuid(request.product_id)
        raw: dict = {}
        for name in ("sku", "name", "description", "price_cents", "brand", "category_slug"):
            if request.HasField(name):
                raw[name] = getattr(request, name)
        if request.HasField("currency_code"):
            raw["currency"] = request.currency_code
        if request.HasField("compare_at_price_cents"):
            raw["compare_at_price_cents"] = request.compare_at_price_cents or None  # 0 clears it
        if request.update_images:
            raw["images"] = list(request.images)
        status = _status_field(request.status, creating=False)
        if status is not None:
            raw["status"] = status
        changes = domain.validate_product(raw, creating=False)
        product = await self.repo.update_product(product_id, changes, caller.user_id, caller.role)
        return catalog_pb2.UpdateProductResponse(product=product_proto(product))

    async def DeleteProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = domain.parse_uuid(request.product_id)
        await self.repo.archive_product(product_id, caller.user_id, caller.role)
        return catalog_pb2.DeleteProductResponse()

    async def AdjustStock(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = domain.parse_uuid(request.product_id)
        reason = domain.validate_stock_adjustment(request.delta, request.reason)
        request_id = domain.scoped_request_id(caller.user_id, domain.validate_request_id(request.request_id))
        stock = await self.repo.adjust_stock(product_id, request.delta, reason, caller.user_id, caller.role,
                                             request_id)
        return catalog_pb2.AdjustStockResponse(stock=stock)

    # -- categories ----------------------------------------------------------------------------

    async def ListCategories(self, request, context):
        categories = await self.repo.list_categories()
        return catalog_pb2.ListCategoriesResponse(categories=[category_proto(c, n) for c, n in categories])

    async def CreateCategory(self, request, context):
        require_role(ROLE_ADMIN)
        slug, name, parent = domain.validate_category(request.slug, request.name, request.parent_slug)
        category = await self.repo.create_category(slug, name, parent)
        return catalog_pb2.CreateCategoryResponse(category=category_proto(category, 0))

    # -- reviews -------------------------------------------------------------------------------

    async def ListReviews(self, request, context):
        product_id = domain.parse_uuid(request.product_id)
        caller = current_caller()
        size = page_size(request.page_size)
        query_fp = fingerprint(kind="reviews", product=product_id)
        position = self.tokens.decode(request.page_token, query_fp)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position["t"]), str(position["id"]))
            except (KeyError, TypeError, ValueError):
                raise invalid_page_token() from None
            if after[0].tzinfo is None:
                raise invalid_page_token()
        page = await self.repo.list_reviews(product_id, caller.user_id, caller.role, size, after)
        next_token = self.tokens.encode({"t": page.last_key, "id": page.last_id}, query_fp) if page.has_more else ""
        return catalog_pb2.ListReviewsResponse(
            reviews=[review_proto(r) for r in page.items], next_page_token=next_token, total_size=page.total
        )

    async def CreateReview(self, request, context):
        caller = require_user()
        product_id = domain.parse_uuid(request.product_id)
        rating, title, body = domain.validate_review(request.rating, request.title, request.body)
        review = await self.repo.create_review(product_id, caller.user_id, caller.role, rating, title, body)
        return catalog_pb2.CreateReviewResponse(review=review_proto(review))

    # -- wishlist ------------------------------------------------------------------------------

    async def ListWishlistItems(self, request, context):
        caller = require_user()
        items = await self.repo.list_wishlist(caller.user_id, caller.role)
        return catalog_pb2.ListWishlistItemsResponse(
            items=[catalog_pb2.WishlistItem(product=product_proto(p), add_time=to_timestamp(t)) for p, t in items]
        )

    async def AddWishlistItem(self, request, context):
        caller = require_user()
        product_id = domain.parse_uuid(request.product_id)
        await self.repo.add_wishlist_item(caller.user_id, caller.role, product_id)
        return catalog_pb2.AddWishlistItemResponse()

    async def RemoveWishlistItem(self, request, context):
        caller = require_user()
        product_id = domain.parse_uuid(request.product_id)
        await self.repo.remove_wishlist_item(caller.user_id, product_id)
        return catalog_pb2.RemoveWishlistItemResponse()

    # -- internal: stock reservations, purchases -----------------------------------------------

    async def ReserveStock(self, request, context):
        require_internal()
        reservation_id = domain.validate_reservation_id(request.reservation_id)
        lines = domain.merge_lines([(line.product_id, line.quantity) for line in request.lines])
        view = await self.repo.reserve(reservation_id, lines, self.runtime.settings.reservation_ttl_seconds,
                                       renew=request.renew)
        return catalog_pb2.ReserveStockResponse(reservation=reservation_proto(view))

    async def CommitReservation(self, request, context):
        require_internal()
        reservation_id = domain.validate_reservation_id(request.reservation_id)
        user_id = domain.parse_uuid(request.user_id, "userId") if request.user_id else None
        view = await self.repo.commit_reservation(reservation_id, user_id)
        return catalog_pb2.CommitReservationResponse(reservation=reservation_proto(view))

    async def ReleaseReservation(self, request, context):
        require_internal()
        view = await self.repo.release_reservation(domain.validate_reservation_id(request.reservation_id))
        return catalog_pb2.ReleaseReservationResponse(reservation=reservation_proto(view))

    async def RestockReservation(self, request, context):
        require_internal()
        view = await self.repo.restock_reservation(domain.validate_reservation_id(request.reservation_id))
        return catalog_pb2.RestockReservationResponse(reservation=reservation_proto(view))

    async def RecordPurchases(self, request, context):
        require_internal()
        order_id = request.order_id.strip()
        if not order_id or len(order_id) > domain.RESERVATION_ID_MAX or "\x00" in order_id:
            raise ValidationError.single("orderId", f"is required, at most {domain.RESERVATION_ID_MAX} characters")
        user_id = domain.parse_uuid(request.user_id, "userId")
        ids = list(dict.fromkeys(pid.lower() for pid in request.product_ids))
        if len(ids) > domain.MAX_BATCH_IDS:
            raise ValidationError.single("productIds", f"at most {domain.MAX_BATCH_IDS} ids")
        for pid in ids:
            domain.parse_uuid(pid, "productIds")
        await self.repo.record_purchases(order_id, user_id, ids)
        return catalog_pb2.RecordPurchasesResponse()
