"""RPC handlers of the cart service, a thin adapter: resolve the cart's owner from the verified
caller, parse the request, call the use case (`carts.py`, `checkout.py`), map the answer
(`mapping.py`). Rules are `domain.py`'s, queries `repository.py`'s."""

from __future__ import annotations

from services.cart import carts, checkout, domain
from services.cart.domain import Owner
from services.cart.mapping import cart_proto, checkout_lines_proto
from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.lib.context import current_caller, require_caller
from shop.lib.errors import InvalidArgument
from shop.lib.idempotency import clean_key


class CartServicer(cart_pb2_grpc.CartServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def _owner(self, owner: cart_pb2.CartOwner) -> Owner:
        """The cart the caller may reach (`domain.resolve_owner`)."""
        services = self.runtime.settings.user_owner_service_set
        return domain.resolve_owner(current_caller(), owner.user_id, owner.session_id, services)

    async def GetCart(self, request, context):
        cart = await carts.get_cart(self.runtime, self._owner(request.owner))
        return cart_pb2.GetCartResponse(cart=cart_proto(cart))

    async def AddCartItem(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        quantity = domain.validate_add_quantity(request.quantity)
        request_id = clean_key(request.request_id or None, field_name="requestId")
        cart, replayed = await carts.add_item(self.runtime, owner, product_id, quantity, request_id)
        return cart_pb2.AddCartItemResponse(cart=cart_proto(cart), replayed=replayed)

    async def SetCartItemQuantity(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        quantity = domain.validate_set_quantity(request.quantity)
        cart = await carts.set_quantity(self.runtime, owner, product_id, quantity)
        return cart_pb2.SetCartItemQuantityResponse(cart=cart_proto(cart))

    async def RemoveCartItem(self, request, context):
        owner = self._owner(request.owner)
        product_id = domain.parse_uuid(request.product_id, "productId")
        cart = await carts.remove_item(self.runtime, owner, product_id)
        return cart_pb2.RemoveCartItemResponse(cart=cart_proto(cart))

    async def ClearCart(self, request, context):
        await carts.clear_cart(self.runtime, self._owner(request.owner))
        return cart_pb2.ClearCartResponse()

    async def MergeCarts(self, request, context):
        owner = self._owner(request.owner)
        if not owner.is_user:
            raise InvalidArgument(
                "Only a user's cart can receive a guest cart.", fields={"owner": ["must name a user's cart"]}
            )
        guest = Owner(session_id=domain.parse_uuid(request.guest_session_id, "guestSessionId"))
        cart = await carts.merge_guest_cart(self.runtime, owner, guest)
        return cart_pb2.MergeCartsResponse(cart=cart_proto(cart))

    # -- checkout (internal: the orders service only) ---------------------------------------------

    async def CheckoutCart(self, request, context):
        require_caller("cart.CheckoutCart")
        owner = self._owner(request.owner)
        checkout_id = domain.validate_checkout_id(request.checkout_id)
        lines = await checkout.checkout_cart(self.runtime, owner, checkout_id)
        return cart_pb2.CheckoutCartResponse(lines=checkout_lines_proto(lines))

    async def RestoreCart(self, request, context):
        require_caller("cart.RestoreCart")
        checkout_id = domain.validate_checkout_id(request.checkout_id)
        await checkout.restore_cart(self.runtime, checkout_id)
        return cart_pb2.RestoreCartResponse()
