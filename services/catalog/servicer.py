"""RPC handlers of the catalog service, a thin adapter: check the caller, parse the request
(domain/inputs.py's validation, mapping.py's request tables), call the use case (products.py, stock.py,
reviews.py, wishlist.py), map the result (mapping.py). No rules, queries or transactions here."""

from __future__ import annotations

from services.catalog.domain import inputs
from services.catalog.domain import products as product_rules
from services.catalog.domain import stock as stock_rules
from services.catalog.mapping import (
    category_proto,
    expected_update_time,
    new_product_fields,
    product_changes,
    product_proto,
    product_query,
    reservation_proto,
    review_proto,
    wishlist_item_proto,
)
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.lib.context import ROLE_ADMIN, ROLE_SELLER, current_caller, require_caller, require_role, require_user
from shop.lib.errors import ValidationError
from shop.lib.idempotency import clean_key, scoped_key
from shop.lib.pagination import page_size


def request_key(caller, value: str) -> str | None:
    """The caller's idempotency key (shop.lib.idempotency's rule) scoped to them, as stored (64
    characters); None without one."""
    key = clean_key(value or None, field_name="requestId")
    return None if key is None else scoped_key(caller.user_id, key)


def product_ids(raw) -> list[str]:
    """Distinct lower-case ids, at most MAX_BATCH_IDS."""
    ids = list(dict.fromkeys(pid.lower() for pid in raw))
    if len(ids) > inputs.MAX_BATCH_IDS:
        raise ValidationError.single("productIds", f"at most {inputs.MAX_BATCH_IDS} ids")
    return ids


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.products = runtime.products
        self.stock = runtime.stock
        self.reviews = runtime.reviews
        self.wishlist = runtime.wishlist

    # -- products ------------------------------------------------------------------------------

    async def ListProducts(self, request, context):
        items, next_token, total = await self.products.list_page(
            product_query(request), page_size(request.page_size), request.page_token
        )
        return catalog_pb2.ListProductsResponse(
            products=[product_proto(p) for p in items], next_page_token=next_token, total_size=total
        )

    async def GetProduct(self, request, context):
        product_id = inputs.parse_uuid(request.product_id)
        caller = current_caller()
        product = await self.products.get(product_id, caller.user_id, caller.role)
        return catalog_pb2.GetProductResponse(product=product_proto(product))

    async def BatchGetProducts(self, request, context):
        require_caller("catalog.BatchGetProducts")
        ids = product_ids(request.product_ids)
        # Malformed ids cannot exist: they are simply missing from the answer.
        products = await self.products.batch_get([pid for pid in ids if inputs.is_uuid(pid)])
        return catalog_pb2.BatchGetProductsResponse(products=[product_proto(p) for p in products])

    async def CreateProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        fields = inputs.validate_product(new_product_fields(request), creating=True)
        inputs.check_prices(fields["price_cents"], fields["compare_at_price_cents"])
        request_id = request_key(caller, request.request_id)
        seller_id = product_rules.owner_of_new_product(caller.user_id, caller.role)
        product = await self.products.create_product(fields, seller_id, request_id)
        return catalog_pb2.CreateProductResponse(product=product_proto(product))

    async def UpdateProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = inputs.parse_uuid(request.product_id)
        changes = inputs.validate_product(product_changes(request), creating=False)
        product = await self.products.update_product(
            product_id, changes, caller.user_id, caller.role, expected_update_time(request)
        )
        return catalog_pb2.UpdateProductResponse(product=product_proto(product))

    async def DeleteProduct(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = inputs.parse_uuid(request.product_id)
        await self.products.archive_product(product_id, caller.user_id, caller.role)
        return catalog_pb2.DeleteProductResponse()

    async def AdjustStock(self, request, context):
        caller = require_role(ROLE_ADMIN, ROLE_SELLER)
        product_id = inputs.parse_uuid(request.product_id)
        reason = stock_rules.validate_stock_adjustment(request.delta, request.reason)
        request_id = request_key(caller, request.request_id)
        stock = await self.stock.adjust_stock(
            product_id, request.delta, reason, caller.user_id, caller.role, request_id
        )
        return catalog_pb2.AdjustStockResponse(stock=stock)

    # -- categories ----------------------------------------------------------------------------

    async def ListCategories(self, request, context):
        categories = await self.products.list_categories()
        return catalog_pb2.ListCategoriesResponse(categories=[category_proto(c, n) for c, n in categories])

    async def CreateCategory(self, request, context):
        require_role(ROLE_ADMIN)
        slug, name, parent = inputs.validate_category(request.slug, request.name, request.parent_slug)
        category = await self.products.create_category(slug, name, parent)
        return catalog_pb2.CreateCategoryResponse(category=category_proto(category, 0))

    # -- reviews -------------------------------------------------------------------------------

    async def ListReviews(self, request, context):
        product_id = inputs.parse_uuid(request.product_id)
        caller = current_caller()
        items, next_token, total = await self.reviews.list_page(
            product_id, caller.user_id, caller.role, page_size(request.page_size), request.page_token
        )
        return catalog_pb2.ListReviewsResponse(
            reviews=[review_proto(r) for r in items], next_page_token=next_token, total_size=total
        )

    async def CreateReview(self, request, context):
        caller = require_user()
        product_id = inputs.parse_uuid(request.product_id)
        rating, title, body = inputs.validate_review(request.rating, request.title, request.body)
        review = await self.reviews.create_review(product_id, caller.user_id, caller.role, rating, title, body)
        return catalog_pb2.CreateReviewResponse(review=review_proto(review))

    # -- wishlist ------------------------------------------------------------------------------

    async def ListWishlistItems(self, request, context):
        caller = require_user()
        rows = await self.wishlist.list(caller.user_id, caller.role)
        return catalog_pb2.ListWishlistItemsResponse(items=[wishlist_item_proto(row, row.added_at) for row in rows])

    async def AddWishlistItem(self, request, context):
        caller = require_user()
        product_id = inputs.parse_uuid(request.product_id)
        await self.wishlist.add(caller.user_id, caller.role, product_id)
        return catalog_pb2.AddWishlistItemResponse()

    async def RemoveWishlistItem(self, request, context):
        caller = require_user()
        product_id = inputs.parse_uuid(request.product_id)
        await self.wishlist.remove(caller.user_id, product_id)
        return catalog_pb2.RemoveWishlistItemResponse()

    # -- internal: stock reservations, purchases -----------------------------------------------

    async def ReserveStock(self, request, context):
        require_caller("catalog.ReserveStock")
        reservation_id = stock_rules.validate_reservation_id(request.reservation_id)
        lines = stock_rules.merge_lines([(line.product_id, line.quantity) for line in request.lines])
        view = await self.stock.reserve(
            reservation_id, lines, self.runtime.settings.reservation_ttl_seconds, renew=request.renew
        )
        return catalog_pb2.ReserveStockResponse(reservation=reservation_proto(view))

    async def CommitReservation(self, request, context):
        require_caller("catalog.CommitReservation")
        reservation_id = stock_rules.validate_reservation_id(request.reservation_id)
        user_id = inputs.parse_uuid(request.user_id, "userId") if request.user_id else None
        view = await self.stock.commit_reservation(reservation_id, user_id)
        return catalog_pb2.CommitReservationResponse(reservation=reservation_proto(view))

    async def ReleaseReservation(self, request, context):
        require_caller("catalog.ReleaseReservation")
        view = await self.stock.release_reservation(stock_rules.validate_reservation_id(request.reservation_id))
        return catalog_pb2.ReleaseReservationResponse(reservation=reservation_proto(view))

    async def RestockReservation(self, request, context):
        require_caller("catalog.RestockReservation")
        view = await self.stock.restock_reservation(stock_rules.validate_reservation_id(request.reservation_id))
        return catalog_pb2.RestockReservationResponse(reservation=reservation_proto(view))

    async def RecordPurchases(self, request, context):
        require_caller("catalog.RecordPurchases")
        order_id = stock_rules.validate_order_id(request.order_id)
        user_id = inputs.parse_uuid(request.user_id, "userId")
        ids = product_ids(request.product_ids)
        for pid in ids:
            inputs.parse_uuid(pid, "productIds")
        await self.reviews.record_purchases(order_id, user_id, ids)
        return catalog_pb2.RecordPurchasesResponse()
