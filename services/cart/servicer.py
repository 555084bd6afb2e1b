"""RPC handlers of the cart service: parse the request, resolve the cart's owner, call the
domain and the repository, price the result with the catalog, map it to protos."""

from __future__ import annotations

from services.cart import domain, repository
from services.cart.domain import Line, Owner, PricedCart, ProductInfo
from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.catalog.v1 import catalog_pb2
from shop.lib.context import current_caller, require_service
from shop.lib.db import utcnow
from shop.lib.errors import Aborted, InvalidArgument, NotFound


def product_info(product: catalog_pb2.Product) -> ProductInfo:
    return ProductInfo(
        id=product.id,
        sku=product.sku,
        name=product.name,
        price_cents=product.price_cents,
        currency=product.currency_code,
        stock=product.stock,
        active=product.status == catalog_pb2.PRODUCT_STATUS_ACTIVE,
    )


def cart_proto(cart: PricedCart) -> cart_pb2.Cart:
    return cart_pb2.Cart(
        id=cart.id,
        items=[
            cart_pb2.CartItem(
                product_id=item.product_id,
                sku=item.sku,
                name=item.name,
                unit_price_cents=item.unit_price_cents,
                quantity=item.quantity,
                line_total_cents=item.line_total_cents,
                available=item.available,
            )
            for item in cart.items
        ],
        item_count=cart.item_count,
        subtotal_cents=cart.subtotal_cents,
        currency_code=cart.currency,
    )


class CartServicer(cart_pb2_grpc.CartServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.db = runtime.db

    # -- helpers ----------------------------------------------------------------------------------

    def _owner(self, owner: cart_pb2.CartOwner) -> Owner:
        return domain.resolve_owner(
            current_caller(), owner.user_id, owner.session_id, self.settings.user_owner_service_set
        )

    async def _products(self, product_ids: list[str], known: dict[str, ProductInfo] | None = None
                        ) -> dict[str, ProductInfo]:
        """The catalog's current data for these products, in ONE BatchGetProducts call
        (any status; missing ids are simply absent). `known`: fetched moments ago in this RPC."""
        known = known or {}
        product_ids = [pid for pid in product_ids if pid not in known]
        if not product_ids:
            return dict(known)
        response = await self.runtime.clients.catalog.BatchGetProducts(
            catalog_pb2.BatchGetProductsRequest(product_ids=sorted(set(product_ids)))
        )
        return {**known, **{product.id: product_info(product) for product in response.products}}

    async def _priced(self, owner: Owner, known: dict[str, ProductInfo] | None = None,
                      lines: list[Line] | None = None) -> cart_pb2.Cart:
        """The cart priced now. `known` products (fetched earlier in the same RPC) are not asked
        again; `lines` read by the write that just ended are not read again."""
        if lines is None:
            lines = await repository.read_lines(self.db, owner.cart_id)
        products = await self._products([line.product_id for line in lines], known)
        return cart_proto(domain.price_cart(owner.cart_id, lines, products, self.settings.currency))

    # -- RPCs -------------------------------------------------------------------------------------

    async def GetCart(self, request, context):
        owner = self._owner(request.owner)
        return cart_pb2.GetCartResponse(cart=await self._priced(owner))

    async def AddCartItem(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        quantity = domain.validate_add_quantity(request.quantity)
        request_id = domain.validate_request_id(request.request_id)
        fingerprint = domain.add_fingerprint(product_id, quantity)
        if request_id is not None:
            async with self.db.write() as tx:
                stored = await repository.request_fingerprint(tx, owner.cart_id, request_id)
            if stored is not None:  # a repeat: nothing is added again
                domain.check_replay(stored, fingerprint)
                return cart_pb2.AddCartItemResponse(cart=await self._priced(owner), replayed=True)
        # One catalog call prices the whole answer: the product added and the lines already there.
        lines_before = await repository.read_lines(self.db, owner.cart_id)
        products = await self._products([product_id, *(line.product_id for line in lines_before)])
        product = domain.check_can_hold(products.get(product_id), product_id, quantity, self.settings.currency)
        now = utcnow()
        replayed = False
        lines: list[Line] | None = None
        async with self.db.write() as tx:
            cart_id = await repository.touch_cart(tx, owner, now)  # locks the cart: one writer at a time
            stored = None
            if request_id is not None:
                stored = await repository.remember_request(tx, cart_id, request_id, fingerprint, now)
            if stored is not None:  # the same key won a race with this request
                domain.check_replay(stored, fingerprint)
                replayed = True
            else:
                await self._check_room(tx, cart_id, product_id)
                added = await repository.add_quantity(
                    tx, cart_id, product_id, quantity, domain.line_cap(product), now
                )
                if added is None:
                    existing = await repository.line_quantity(tx, cart_id, product_id)
                    raise domain.add_refusal(existing, quantity, product)  # rolls back: nothing changed
                lines = await repository.lines(tx, cart_id)  # under the cart's lock: exactly this add's result
        return cart_pb2.AddCartItemResponse(cart=await self._priced(owner, products, lines), replayed=replayed)

    async def SetCartItemQuantity(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        quantity = domain.validate_set_quantity(request.quantity)
        if quantity == 0:
            await self._remove(owner, product_id)
            return cart_pb2.SetCartItemQuantityResponse(cart=await self._priced(owner))
        products = await self._products([product_id])
        domain.check_can_hold(products.get(product_id), product_id, quantity, self.settings.currency)
        now = utcnow()
        async with self.db.write() as tx:
            cart_id = await repository.touch_cart(tx, owner, now)
            await self._check_room(tx, cart_id, product_id)
            await repository.set_quantity(tx, cart_id, product_id, quantity, now)
        return cart_pb2.SetCartItemQuantityResponse(cart=await self._priced(owner, products))

    async def RemoveCartItem(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        await self._remove(owner, product_id)
        return cart_pb2.RemoveCartItemResponse(cart=await self._priced(owner))

    async def _check_room(self, tx, cart_id: str, product_id: str) -> None:
        """A new line needs room in the cart (the cart row is locked: the count is stable)."""
        line_count, existing = await repository.room(tx, cart_id, product_id)
        if not existing:
            domain.check_room_for_new_line(line_count, self.settings.max_cart_lines)

    async def _remove(self, owner: Owner, product_id: str) -> None:
        now = utcnow()
        async with self.db.write() as tx:
            if not await repository.lock_cart(tx, owner.cart_id) or not await repository.remove_line(
                tx, owner.cart_id, product_id
            ):
                raise NotFound("This product is not in the cart.", code="CART_ITEM_NOT_FOUND",
                               details={"productId": product_id})
            await repository.touch_cart(tx, owner, now)

    async def ClearCart(self, request, context):
        owner = self._owner(request.owner)
        async with self.db.write() as tx:
            if await repository.lock_cart(tx, owner.cart_id):
                await repository.clear(tx, owner.cart_id, utcnow())
        return cart_pb2.ClearCartResponse()

    async def MergeCarts(self, request, context):
        owner = self._owner(request.owner)
        if not owner.is_user:
            raise InvalidArgument(
                "Only a user's cart can receive a guest cart.", fields={"owner": ["must name a user's cart"]}
            )
        guest = Owner(session_id=domain.parse_uuid(request.guest_session_id, "guestSessionId"))
        async with self.db.write() as tx:
            guest_lines = await repository.lines(tx, guest.cart_id)
        if not guest_lines:
            return cart_pb2.MergeCartsResponse(cart=await self._priced(owner))
        priced_ids = {line.product_id for line in guest_lines}
        products = await self._products(list(priced_ids))
        currency = self.settings.currency
        now = utcnow()
        async with self.db.write() as tx:
            cart_id = await repository.touch_cart(tx, owner, now)  # the user's cart, locked first
            if await repository.lock_cart(tx, guest.cart_id):
                guest_lines = await repository.lines(tx, guest.cart_id)
                if any(line.product_id not in priced_ids for line in guest_lines):
                    # A line was added to the guest cart since we priced it; the client may retry.
                    raise Aborted("The guest cart changed during the merge; try again.", code="CART_CHANGED")
                existing = {line.product_id: line.quantity for line in await repository.lines(tx, cart_id)}
                line_count = len(existing)
                for line in guest_lines:
                    current = existing.get(line.product_id, 0)
                    merged = domain.merged_quantity(current, line.quantity, products.get(line.product_id), currency)
                    if merged is None or merged == current:
                        continue
                    if not current:
                        if line_count >= self.settings.max_cart_lines:
                            continue  # the user's cart is full: the guest line is dropped
                        line_count += 1
                    await repository.set_quantity(tx, cart_id, line.product_id, merged, now)
                await repository.delete_cart(tx, guest.cart_id)
        return cart_pb2.MergeCartsResponse(cart=await self._priced(owner))

    # -- checkout (internal: the orders service only) ---------------------------------------------

    async def CheckoutCart(self, request, context):
        require_service(*domain.CHECKOUT_SERVICES)
        owner = self._owner(request.owner)
        checkout_id = domain.validate_checkout_id(request.checkout_id)
        now = utcnow()
        async with self.db.write() as tx:
            # The cart's lock serialises checkouts of one cart: the second one reads no lines.
            # (A cart that does not exist has no lines; nothing is created for it.)
            exists = await repository.lock_cart(tx, owner.cart_id)
            lines = await repository.lines(tx, owner.cart_id) if exists else []
            if await repository.record_checkout(tx, checkout_id, owner, lines, domain.TAKEN, now):
                if lines:
                    await repository.clear(tx, owner.cart_id, now)
            else:  # a repeat (or a concurrent twin): the recorded lines, nothing taken again
                recorded = await repository.checkout(tx, checkout_id)
                assert recorded is not None
                domain.check_same_checkout_owner(recorded.cart_id, owner.cart_id)
                lines = recorded.lines
        return cart_pb2.CheckoutCartResponse(
            lines=[cart_pb2.CheckoutLine(product_id=line.product_id, quantity=line.quantity) for line in lines]
        )

    async def RestoreCart(self, request, context):
        require_service(*domain.CHECKOUT_SERVICES)
        checkout_id = domain.validate_checkout_id(request.checkout_id)
        now = utcnow()
        async with self.db.write() as tx:
            recorded = await repository.lock_checkout(tx, checkout_id)
            if recorded is None:
                # Nothing was taken under this id. Remember it as restored, so a CheckoutCart with
                # it that arrives later (a retry, or one still running) takes nothing; if such a
                # checkout is committing right now, this insert waits for it and then restores it.
                if await repository.record_checkout(tx, checkout_id, None, [], domain.RESTORED, now):
                    return cart_pb2.RestoreCartResponse()
                recorded = await repository.lock_checkout(tx, checkout_id)
                assert recorded is not None
            if recorded.state != domain.TAKEN or recorded.owner is None:
                return cart_pb2.RestoreCartResponse()  # restored already
            if recorded.lines:
                cart_id = await repository.touch_cart(tx, recorded.owner, now)  # creates and locks the cart
                existing = {line.product_id: line.quantity for line in await repository.lines(tx, cart_id)}
                for line in domain.restored_lines(existing, recorded.lines, self.settings.max_cart_lines):
                    await repository.set_quantity(tx, cart_id, line.product_id, line.quantity, now)
            await repository.mark_checkout_restored(tx, checkout_id)
        return cart_pb2.RestoreCartResponse()
