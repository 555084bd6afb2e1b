"""Cart routes (API.md "Cart"): the caller's cart, as a signed-in user or as a guest.

A signed-in user's cart is chosen by the access token (forwarded to the cart service, which checks
it again). A guest's cart is chosen by the `X-Session-ID` header (a UUID); a request without one
gets a freshly issued id back in the `X-Session-ID` response header, and a malformed one is
`400 VALIDATION_ERROR`. Prices, availability and totals are the catalog's, as of the request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import APIRouter, Depends, Header, Path, Response

from gateway.deps import GatewayState, Principal, current_user, get_state, optional_user
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.schemas.cart import AddCartItemBody, Cart, SetCartItemBody, cart_json
from gateway.schemas.common import IDEMPOTENCY_KEY_RULE, UUID_RULE, data, envelope, render
from shop.cart.v1 import cart_pb2
from shop.lib import idempotency
from shop.lib.errors import decode_rpc_error

router = APIRouter(prefix="/api/v1", tags=["cart"])

SESSION_HEADER = "X-Session-ID"
CartEnvelope = envelope(Cart)

SESSION_RESPONSE_HEADER = {
    SESSION_HEADER: {
        "description": "The guest session id: issued when the request had none.",
        "schema": {"type": "string", "format": "uuid"},
    }
}
REPLAYED_RESPONSE_HEADER = {
    idempotency.REPLAYED_HEADER: {
        "description": "true when a repeated Idempotency-Key answered the first result.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
CART_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"headers": SESSION_RESPONSE_HEADER}}
PRODUCT_ERRORS = errors(
    404,
    409,
    e404="PRODUCT_NOT_FOUND (or CART_ITEM_NOT_FOUND)",
    e409="INSUFFICIENT_STOCK, PRODUCT_UNAVAILABLE or CART_FULL",
)


# -- who the cart belongs to ----------------------------------------------------------------------


@dataclass(frozen=True)
class CartCaller:
    principal: Principal | None
    session_id: str
    issued: bool

    @property
    def owner(self) -> cart_pb2.CartOwner:
        # A user's token selects the user's cart; the session only names a guest's cart.
        return cart_pb2.CartOwner() if self.principal else cart_pb2.CartOwner(session_id=self.session_id)

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return self.principal.metadata if self.principal else []

    @property
    def headers(self) -> dict[str, str]:
        headers = {SESSION_HEADER: self.session_id} if self.issued else {}
        if self.principal is None:
            # A guest's cart is private too (the middleware marks authenticated responses already).
            headers["Cache-Control"] = "no-store"
        return headers


def parse_session_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) != 36:
        raise ApiError.validation({SESSION_HEADER: ["must be a UUID"]})
    return str(parsed)


def parse_product_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) != 36:
        raise ApiError.validation({"productId": ["must be a UUID"]})
    return str(parsed)


async def cart_caller(
    principal: Principal | None = Depends(optional_user),
    session_id: str | None = Header(
        default=None,
        alias=SESSION_HEADER,
        description="A guest's cart session (UUID). Omit it to be issued one in the response header.",
        json_schema_extra=UUID_RULE,
    ),
) -> CartCaller:
    if session_id is None:
        return CartCaller(principal=principal, session_id=str(uuid.uuid4()), issued=True)
    return CartCaller(principal=principal, session_id=parse_session_id(session_id), issued=False)


async def call(caller: CartCaller, method, request):
    """Calls the cart service; its errors keep the issued session header."""
    try:
        return await method(request, metadata=caller.metadata)
    except grpc.aio.AioRpcError as exc:
        error = ApiError.from_remote(decode_rpc_error(exc))
        error.headers.update(caller.headers)
        raise error from None


def cart_answer(caller: CartCaller, cart: cart_pb2.Cart, headers: dict[str, str] | None = None) -> Response:
    """The cart as `CartEnvelope`, validated and encoded in one pass (`render`) instead of FastAPI's
    response pipeline (validate, dump to a dict, encode that), with the caller's headers."""
    body = render(CartEnvelope, data(cart_json(cart)))
    return Response(body, media_type="application/json", headers={**caller.headers, **(headers or {})})


# -- routes ---------------------------------------------------------------------------------------

ProductId = Path(
    alias="productId",
    description="The product's id (UUID).",
    json_schema_extra=UUID_RULE,
)


@router.get(
    "/cart",
    operation_id="cart-get",
    summary="Get the caller's cart, priced with the catalog's current data",
    response_model=CartEnvelope,
    responses=CART_RESPONSES,
)
async def get_cart(caller: CartCaller = Depends(cart_caller), state: GatewayState = Depends(get_state)):
    result = await call(caller, state.clients.cart.GetCart, cart_pb2.GetCartRequest(owner=caller.owner))
    return cart_answer(caller, result.cart)


@router.post(
    "/cart/items",
    operation_id="cart-add-item",
    summary="Add a product to the cart (adds to its line; a line holds 1..100 and never more than stock)",
    response_model=CartEnvelope,
    responses={
        200: {"headers": {**SESSION_RESPONSE_HEADER, **REPLAYED_RESPONSE_HEADER}},
        **PRODUCT_ERRORS,
        **errors(422),
    },
)
async def add_cart_item(
    body: AddCartItemBody,
    caller: CartCaller = Depends(cart_caller),
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        json_schema_extra=IDEMPOTENCY_KEY_RULE,
        description="Optional (1..128 printable ASCII characters), scoped to the cart: a repeat with the same "
        "body adds nothing again and answers the cart with `Idempotent-Replayed: true`; with another body it is "
        "422 IDEMPOTENCY_KEY_REUSED. Only successful adds are remembered (at least 24 h).",
    ),
    state: GatewayState = Depends(get_state),
):
    idempotency_key = idempotency.clean_key(idempotency_key)
    request = cart_pb2.AddCartItemRequest(
        owner=caller.owner,
        product_id=parse_product_id(body.product_id),
        quantity=body.quantity,
        # Always a key: the client channel retries this call on UNAVAILABLE, and the key makes a
        # retry add nothing twice.
        request_id=idempotency_key or f"gw-{uuid.uuid4()}",
    )
    result = await call(caller, state.clients.cart.AddCartItem, request)
    return cart_answer(caller, result.cart, {idempotency.REPLAYED_HEADER: "true"} if result.replayed else None)


@router.put(
    "/cart/items/{productId}",
    operation_id="cart-set-item",
    summary="Set the quantity of a cart line (0 removes it)",
    response_model=CartEnvelope,
    responses={**CART_RESPONSES, **PRODUCT_ERRORS},
)
async def set_cart_item(
    body: SetCartItemBody,
    product_id: str = ProductId,
    caller: CartCaller = Depends(cart_caller),
    state: GatewayState = Depends(get_state),
):
    request = cart_pb2.SetCartItemQuantityRequest(
        owner=caller.owner, product_id=parse_product_id(product_id), quantity=body.quantity
    )
    result = await call(caller, state.clients.cart.SetCartItemQuantity, request)
    return cart_answer(caller, result.cart)


@router.delete(
    "/cart/items/{productId}",
    operation_id="cart-remove-item",
    summary="Remove a line from the cart (404 CART_ITEM_NOT_FOUND when it is not there)",
    response_model=CartEnvelope,
    responses={**CART_RESPONSES, **errors(404, e404="CART_ITEM_NOT_FOUND")},
)
async def remove_cart_item(
    product_id: str = ProductId,
    caller: CartCaller = Depends(cart_caller),
    state: GatewayState = Depends(get_state),
):
    request = cart_pb2.RemoveCartItemRequest(owner=caller.owner, product_id=parse_product_id(product_id))
    result = await call(caller, state.clients.cart.RemoveCartItem, request)
    return cart_answer(caller, result.cart)


@router.delete(
    "/cart",
    operation_id="cart-clear",
    status_code=204,
    response_class=Response,
    summary="Empty the cart",
    responses={204: {"description": "Emptied.", "headers": SESSION_RESPONSE_HEADER}},
)
async def clear_cart(
    response: Response, caller: CartCaller = Depends(cart_caller), state: GatewayState = Depends(get_state)
) -> None:
    await call(caller, state.clients.cart.ClearCart, cart_pb2.ClearCartRequest(owner=caller.owner))
    response.headers.update(caller.headers)


@router.post(
    "/cart/merge",
    operation_id="cart-merge",
    summary="Merge the guest cart named by X-Session-ID into the signed-in user's cart",
    description="Adds the guest cart's lines into the user's (quantities added, capped by stock and 100; "
    "lines the catalog no longer sells are dropped) and deletes the guest cart. Requires the "
    "X-Session-ID header.",
    response_model=CartEnvelope,
    responses=errors(404, e404="CART_NOT_FOUND: no guest cart for the session"),
)
async def merge_carts(
    principal: Principal = Depends(current_user),
    session_id: str = Header(
        alias=SESSION_HEADER,
        description="The guest cart's session (UUID).",
        json_schema_extra=UUID_RULE,
    ),
    state: GatewayState = Depends(get_state),
):
    caller = CartCaller(principal=principal, session_id=parse_session_id(session_id), issued=False)
    request = cart_pb2.MergeCartsRequest(owner=caller.owner, guest_session_id=caller.session_id)
    result = await call(caller, state.clients.cart.MergeCarts, request)
    return cart_answer(caller, result.cart)
