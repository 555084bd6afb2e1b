"""The cart service's RPCs called directly (as the gateway, the orders service, or an intruder
would): owner resolution, bad arguments, ClearCart at checkout, and the guest-cart expiry sweep."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from services.cart.server import build_server
from services.cart.tests.helpers import cart_id, cart_rows, make_product, service_stub, snapshot
from shop.cart.v1 import cart_pb2, cart_pb2_grpc
from shop.lib.clients import make_channel
from shop.lib.errors import decode_rpc_error
from tests.harness import service_identity


def owner(user_id: str = "", session_id: str = "") -> cart_pb2.CartOwner:
    return cart_pb2.CartOwner(user_id=user_id, session_id=session_id)


async def expect(call, status: grpc.StatusCode, code: str | None = None):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == status, info.value.details()
    if code is not None:
        assert decode_rpc_error(info.value).code == code
    return decode_rpc_error(info.value)


async def user_with_line(suite, http, quantity: int = 2):
    product = await make_product(suite, stock=20)
    user = await suite.register()
    response = await http.post(
        "/api/v1/cart/items", json={"productId": product["id"], "quantity": quantity}, headers=user["headers"]
    )
    assert response.status_code == 200, response.text
    return user, product


async def test_orders_reads_and_clears_a_users_cart(suite, http):
    user, product = await user_with_line(suite, http, 3)
    orders = service_stub(suite, "orders")
    response = await orders.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=user["user"]["id"])))
    assert response.cart.id == cart_id(user_id=user["user"]["id"])
    assert [(i.product_id, i.quantity, i.available) for i in response.cart.items] == [(product["id"], 3, True)]
    await orders.ClearCart(cart_pb2.ClearCartRequest(owner=owner(user_id=user["user"]["id"])))
    assert cart_rows(suite, response.cart.id) == {}
    # clearing again, or a user who never had a cart, is fine and creates nothing
    await orders.ClearCart(cart_pb2.ClearCartRequest(owner=owner(user_id=user["user"]["id"])))
    before = snapshot(suite)
    await orders.ClearCart(cart_pb2.ClearCartRequest(owner=owner(user_id=str(uuid.uuid4()))))
    assert snapshot(suite) == before


async def test_only_allowed_services_may_name_a_user(suite, http):
    user, product = await user_with_line(suite, http)
    before = snapshot(suite)
    for name in ("gateway", "payments", "catalog"):
        stub = service_stub(suite, name)
        for call in (
            stub.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=user["user"]["id"]))),
            stub.ClearCart(cart_pb2.ClearCartRequest(owner=owner(user_id=user["user"]["id"]))),
            stub.RemoveCartItem(
                cart_pb2.RemoveCartItemRequest(owner=owner(user_id=user["user"]["id"]), product_id=product["id"])
            ),
        ):
            await expect(call, grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN")
    assert snapshot(suite) == before


async def test_no_identity_is_unauthenticated(suite, http):
    user, product = await user_with_line(suite, http)
    channel = make_channel(suite.common()["cart_target"], "cart", service_tokens=None)
    try:
        stub = cart_pb2_grpc.CartServiceStub(channel)
        before = snapshot(suite)
        for request_owner in (owner(user_id=user["user"]["id"]), owner(session_id=str(uuid.uuid4())), owner()):
            await expect(stub.GetCart(cart_pb2.GetCartRequest(owner=request_owner)), grpc.StatusCode.UNAUTHENTICATED)
            await expect(
                stub.ClearCart(cart_pb2.ClearCartRequest(owner=request_owner)), grpc.StatusCode.UNAUTHENTICATED
            )
            await expect(
                stub.AddCartItem(
                    cart_pb2.AddCartItemRequest(owner=request_owner, product_id=product["id"], quantity=1)
                ),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        # a forged service identity is refused too
        forged = [("x-shop-service", "forged.token.value")]
        await expect(
            stub.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=user["user"]["id"])), metadata=forged),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert snapshot(suite) == before
    finally:
        await channel.close()


async def test_user_token_cannot_name_another_cart(suite, http):
    alice, product = await user_with_line(suite, http)
    bob = await suite.register()
    stub = suite.stub("cart")
    metadata = bob["headers"]["Authorization"]
    metadata = [("authorization", metadata)]
    before = snapshot(suite)
    await expect(
        stub.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=alice["user"]["id"])), metadata=metadata),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect(
        stub.ClearCart(cart_pb2.ClearCartRequest(owner=owner(user_id=alice["user"]["id"])), metadata=metadata),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect(
        stub.GetCart(cart_pb2.GetCartRequest(owner=owner(session_id=str(uuid.uuid4()))), metadata=metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert snapshot(suite) == before
    # with an empty owner the token selects bob's own cart
    own = await stub.GetCart(cart_pb2.GetCartRequest(), metadata=metadata)
    assert own.cart.id == cart_id(user_id=bob["user"]["id"]) and not own.cart.items


async def test_bad_arguments_are_invalid_and_change_nothing(suite, http):
    product = await make_product(suite, stock=5)
    stub = suite.stub("cart")  # a service identity: guest carts only
    session = str(uuid.uuid4())
    await stub.AddCartItem(
        cart_pb2.AddCartItemRequest(owner=owner(session_id=session), product_id=product["id"], quantity=1)
    )
    before = snapshot(suite)
    guest = owner(session_id=session)
    cases = [
        stub.GetCart(cart_pb2.GetCartRequest()),
        stub.GetCart(cart_pb2.GetCartRequest(owner=owner(session_id="nope"))),
        stub.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=str(uuid.uuid4()), session_id=session))),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=0)),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=-5)),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=2**31 - 1)),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=-(2**31))),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id="", quantity=1)),
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id="x" * 36, quantity=1)),
        stub.SetCartItemQuantity(
            cart_pb2.SetCartItemQuantityRequest(owner=guest, product_id=product["id"], quantity=-1)
        ),
        stub.SetCartItemQuantity(
            cart_pb2.SetCartItemQuantityRequest(owner=guest, product_id=product["id"], quantity=101)
        ),
        stub.RemoveCartItem(cart_pb2.RemoveCartItemRequest(owner=guest, product_id="1; DROP TABLE carts")),
        stub.MergeCarts(cart_pb2.MergeCartsRequest(owner=guest, guest_session_id=str(uuid.uuid4()))),
    ]
    for call in cases:
        await expect(call, grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR")
    await expect(
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=str(uuid.uuid4()), quantity=1)),
        grpc.StatusCode.NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    await expect(
        stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=5)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_STOCK",
    )
    assert snapshot(suite) == before


async def test_merge_needs_a_user_and_a_valid_guest_session(suite, http):
    user, product = await user_with_line(suite, http)
    metadata = [("authorization", user["headers"]["Authorization"])]
    stub = suite.stub("cart")
    before = snapshot(suite)
    for guest_session in ("", "nope", str(uuid.uuid4())[:-1]):
        await expect(
            stub.MergeCarts(cart_pb2.MergeCartsRequest(guest_session_id=guest_session), metadata=metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert snapshot(suite) == before
    # an unknown (or already merged) guest session merges nothing
    response = await stub.MergeCarts(cart_pb2.MergeCartsRequest(guest_session_id=str(uuid.uuid4())), metadata=metadata)
    assert [(i.product_id, i.quantity) for i in response.cart.items] == [(product["id"], 2)]


async def test_background_sweep_deletes_expired_guest_carts(suite, http):
    product = await make_product(suite, stock=50)
    stub = suite.stub("cart")
    old_guest, fresh_guest = str(uuid.uuid4()), str(uuid.uuid4())
    for session in (old_guest, fresh_guest):
        await stub.AddCartItem(
            cart_pb2.AddCartItemRequest(owner=owner(session_id=session), product_id=product["id"], quantity=1)
        )
    user, _ = await user_with_line(suite, http)
    user_cart = cart_id(user_id=user["user"]["id"])
    # the old guest cart and the user's cart were last changed 31 days ago; a 29-day-old guest cart is kept
    suite.sql(
        "cart",
        "UPDATE carts SET updated_at = now() - interval '31 days' WHERE id IN (%s, %s)",
        (cart_id(session_id=old_guest), user_cart),
    )
    suite.sql(
        "cart",
        "UPDATE carts SET updated_at = now() - interval '29 days' WHERE id = %s",
        (cart_id(session_id=fresh_guest),),
    )
    # a second cart process on the same database with a short sweep interval (the suite's runs hourly)
    server = build_server(suite.service_settings("cart", grpc_address="127.0.0.1:0", sweep_interval_seconds=0.2))
    await server.start()
    try:
        for _ in range(100):
            if not suite.sql("cart", "SELECT 1 FROM carts WHERE id = %s", (cart_id(session_id=old_guest),)):
                break
            await asyncio.sleep(0.1)
    finally:
        await server.stop(grace=0.5)
    assert suite.sql("cart", "SELECT count(*) FROM carts WHERE id = %s", (cart_id(session_id=old_guest),)) == [(0,)]
    assert cart_rows(suite, cart_id(session_id=old_guest)) == {}
    assert cart_rows(suite, cart_id(session_id=fresh_guest)) == {product["id"]: 1}
    assert len(cart_rows(suite, user_cart)) == 1


async def test_a_full_cart_refuses_new_lines(suite):
    products = [await make_product(suite, stock=10) for _ in range(3)]
    # a second cart process on the same database with a small line limit
    server = build_server(suite.service_settings("cart", grpc_address="127.0.0.1:0", max_cart_lines=2))
    await server.start()
    channel = make_channel(server.address, "cart", service_tokens=service_identity("gateway"))
    try:
        stub = cart_pb2_grpc.CartServiceStub(channel)
        guest = owner(session_id=str(uuid.uuid4()))
        for product in products[:2]:
            await stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=product["id"], quantity=1))
        before = snapshot(suite)
        await expect(
            stub.AddCartItem(cart_pb2.AddCartItemRequest(owner=guest, product_id=products[2]["id"], quantity=1)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CART_FULL",
        )
        await expect(
            stub.SetCartItemQuantity(
                cart_pb2.SetCartItemQuantityRequest(owner=guest, product_id=products[2]["id"], quantity=1)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CART_FULL",
        )
        assert snapshot(suite) == before
        # existing lines can still grow
        response = await stub.AddCartItem(
            cart_pb2.AddCartItemRequest(owner=guest, product_id=products[0]["id"], quantity=1)
        )
        assert [i.quantity for i in response.cart.items] == [2, 1]
    finally:
        await channel.close()
        await server.stop(grace=0.5)
