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
from pydantic import BaseModel, Field

from gateway.deps import ApiModel, GatewayState, Principal, current_user, get_state, ok, optional_user
from gateway.errors import ApiError
from gateway.responses import JSONResponse
from shop.cart.v1 import cart_pb2
from shop.lib import idempotency
from shop.lib.errors import decode_rpc_error

router = APIRouter(prefix="/api/v1", tags=["cart"])

SESSION_HEADER = "X-Session-ID"
MAX_LINE_QUANTITY = 100


# -- request bodies and documented responses ------------------------------------------------------

class AddCartItemBody(ApiModel):
    product_id: str = Field(description="The product's id (UUID).")
    quantity: int = Field(default=1, ge=1, le=MAX_LINE_QUANTITY, description="Added to the line (1..100).")


class SetCartItemBody(ApiModel):
    quantity: int = Field(ge=0, le=MAX_LINE_QUANTITY, description="The line's new quantity; 0 removes it.")


class CartItemOut(BaseModel):
    productId: str  # noqa: N815 - the public JSON names are camelCase
    sku: str
    name: str
    unitPriceCents: int = Field(description="The catalog's current price.")  # noqa: N815
    quantity: int
    lineTotalCents: int = Field(description="unitPriceCents × quantity.")  # noqa: N815
    available: bool = Field(
        description="False when the catalog no longer sells the product (archived, draft, unknown) "
        "or has fewer in stock than the quantity. Unavailable lines are not counted in itemCount "
        "or subtotalCents."
    )


class CartOut(BaseModel):
    id: str
    items: list[CartItemOut]
    itemCount: int = Field(description="Sum of the quantities of the available lines.")  # noqa: N815
    subtotalCents: int = Field(description="Sum of the line totals of the available lines.")  # noqa: N815
    currency: str


class CartEnvelope(BaseModel):
    data: CartOut


SESSION_RESPONSE_HEADER = {
    SESSION_HEADER: {
        "description": "The guest session id: issued when the request had none.",
        "schema": {"type": "string", "format": "uuid"},
    }
}
CART_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": CartEnvelope, "headers": SESSION_RESPONSE_HEADER}}


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


def cart_json(cart: cart_pb2.Cart) -> dict:
    return {
        "id": cart.id,
        "items": [
            {
                "productId": item.product_id,
                "sku": item.sku,
                "name": item.name,
                "unitPriceCents": item.unit_price_cents,
                "quantity": item.quantity,
                "lineTotalCents": item.line_total_cents,
                "available": item.available,
            }
            for item in cart.items
        ],
        "itemCount": cart.item_count,
        "subtotalCents": cart.subtotal_cents,
        "currency": cart.currency_code,
    }


def cart_response(caller: CartCaller, cart: cart_pb2.Cart) -> JSONResponse:
    return ok(cart_json(cart), headers=caller.headers)


# -- routes ---------------------------------------------------------------------------------------

@router.get("/cart", summary="Get the caller's cart, priced with the catalog's current data", responses=CART_RESPONSES)
async def get_cart(
    caller: CartCaller = Depends(cart_caller), state: GatewayState = Depends(get_state)
) -> JSONResponse:
    response = await call(caller, state.clients.cart.GetCart, cart_pb2.GetCartRequest(owner=caller.owner))
    return cart_response(caller, response.cart)


@router.post(
    "/cart/items",
    summary="Add a product to the cart (adds to its line; a line holds 1..100 and never more than stock)",
    responses=CART_RESPONSES,
)
async def add_cart_item(
    body: AddCartItemBody,
    caller: CartCaller = Depends(cart_caller),
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        description="Optional (1..128 printable ASCII characters), scoped to the cart: a repeat with the same "
        "body adds nothing again and answers the cart with `Idempotent-Replayed: true`; with another body it is "
        "422 IDEMPOTENCY_KEY_REUSED. Only successful adds are remembered (at least 24 h).",
    ),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    idempotency_key = idempotency.clean_key(idempotency_key)
    request = cart_pb2.AddCartItemRequest(
        owner=caller.owner,
        product_id=parse_product_id(body.product_id),
        quantity=body.quantity,
        # Always a key: the client channel retries this call on UNAVAILABLE, and the key makes a
        # retry add nothing twice.
        request_id=idempotency_key or f"gw-{uuid.uuid4()}",
    )
    response = await call(caller, state.clients.cart.AddCartItem, request)
    result = cart_response(caller, response.cart)
    if response.replayed:
        result.headers[idempotency.REPLAYED_HEADER] = "true"
    return result


@router.put(
    "/cart/items/{productId}",
    summary="Set the quantity of a cart line (0 removes it)",
    responses=CART_RESPONSES,
)
async def set_cart_item(
    body: SetCartItemBody,
    product_id: str = Path(alias="productId", description="The product's id (UUID)."),
    caller: CartCaller = Depends(cart_caller),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    request = cart_pb2.SetCartItemQuantityRequest(
        owner=caller.owner, product_id=parse_product_id(product_id), quantity=body.quantity
    )
    response = await call(caller, state.clients.cart.SetCartItemQuantity, request)
    return cart_response(caller, response.cart)


@router.delete(
    "/cart/items/{productId}",
    summary="Remove a line from the cart (404 CART_ITEM_NOT_FOUND when it is not there)",
    responses=CART_RESPONSES,
)
async def remove_cart_item(
    product_id: str = Path(alias="productId", description="The product's id (UUID)."),
    caller: CartCaller = Depends(cart_caller),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    request = cart_pb2.RemoveCartItemRequest(owner=caller.owner, product_id=parse_product_id(product_id))
    response = await call(caller, state.clients.cart.RemoveCartItem, request)
    return cart_response(caller, response.cart)


@router.delete(
    "/cart",
    status_code=204,
    summary="Empty the cart",
    responses={204: {"description": "Emptied.", "headers": SESSION_RESPONSE_HEADER}},
)
async def clear_cart(
    caller: CartCaller = Depends(cart_caller), state: GatewayState = Depends(get_state)
) -> Response:
    await call(caller, state.clients.cart.ClearCart, cart_pb2.ClearCartRequest(owner=caller.owner))
    return Response(status_code=204, headers=caller.headers)


@router.post(
    "/cart/merge",
    summary="Merge the guest cart named by X-Session-ID into the signed-in user's cart",
    description="Adds the guest cart's lines into the user's (quantities added, capped by stock and 100; "
    "lines the catalog no longer sells are dropped) and deletes the guest cart. Requires the "
    "X-Session-ID header.",
    responses={200: {"model": CartEnvelope}},
)
async def merge_carts(
    principal: Principal = Depends(current_user),
    session_id: str | None = Header(default=None, alias=SESSION_HEADER, description="The guest cart's session."),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    if session_id is None:
        raise ApiError.validation({SESSION_HEADER: ["is required to merge a guest cart"]})
    caller = CartCaller(principal=principal, session_id=parse_session_id(session_id), issued=False)
    request = cart_pb2.MergeCartsRequest(owner=caller.owner, guest_session_id=caller.session_id)
    response = await call(caller, state.clients.cart.MergeCarts, request)
    return cart_response(caller, response.cart)
