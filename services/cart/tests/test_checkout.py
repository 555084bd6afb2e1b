"""CheckoutCart and RestoreCart, called as the orders service would (real PostgreSQL, real gRPC
servers): the cart is taken and emptied in one call, exactly once per cart whatever the checkout
id, a repeat returns what was taken, a restore puts it back once, and nobody but orders may call."""

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


def taken(response) -> list[tuple[str, int]]:
    return [(line.product_id, line.quantity) for line in response.lines]


async def add(stub, user_id: str, product_id: str, quantity: int) -> None:
    await stub.AddCartItem(
        cart_pb2.AddCartItemRequest(owner=owner(user_id=user_id), product_id=product_id, quantity=quantity)
    )


async def checkout(stub, user_id: str, checkout_id: str):
    return await stub.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(user_id=user_id), checkout_id=checkout_id))


async def restore(stub, checkout_id: str) -> None:
    await stub.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=checkout_id))


def checkout_row(suite, checkout_id: str):
    rows = suite.sql("cart", "SELECT cart_id, state, lines FROM cart_checkouts WHERE checkout_id = %s", (checkout_id,))
    return rows[0] if rows else None


async def test_checkout_takes_the_lines_and_empties_the_cart(suite):
    orders = service_stub(suite, "orders")
    first, second = await make_product(suite, stock=20), await make_product(suite, stock=20)
    user = str(uuid.uuid4())
    await add(orders, user, first["id"], 3)
    await add(orders, user, second["id"], 1)
    checkout_id = str(uuid.uuid4())
    response = await checkout(orders, user, checkout_id)
    assert taken(response) == [(first["id"], 3), (second["id"], 1)]  # in the cart's order
    assert cart_rows(suite, cart_id(user_id=user)) == {}
    read = await orders.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=user)))
    assert not read.cart.items and read.cart.item_count == 0
    assert checkout_row(suite, checkout_id) == (
        cart_id(user_id=user),
        "taken",
        [{"product_id": first["id"], "quantity": 3}, {"product_id": second["id"], "quantity": 1}],
    )


async def test_a_repeat_returns_the_same_lines_and_takes_nothing_new(suite):
    orders = service_stub(suite, "orders")
    first, later = await make_product(suite, stock=20), await make_product(suite, stock=20)
    user = str(uuid.uuid4())
    await add(orders, user, first["id"], 2)
    checkout_id = str(uuid.uuid4())
    assert taken(await checkout(orders, user, checkout_id)) == [(first["id"], 2)]
    await add(orders, user, later["id"], 4)  # the buyer fills the cart again
    for _ in range(2):
        assert taken(await checkout(orders, user, checkout_id)) == [(first["id"], 2)]
        assert cart_rows(suite, cart_id(user_id=user)) == {later["id"]: 4}
    # another checkout id takes what is there now
    assert taken(await checkout(orders, user, str(uuid.uuid4()))) == [(later["id"], 4)]
    assert cart_rows(suite, cart_id(user_id=user)) == {}


async def test_an_empty_cart_is_recorded_so_a_repeat_stays_empty(suite):
    orders = service_stub(suite, "orders")
    product = await make_product(suite, stock=20)
    user = str(uuid.uuid4())
    checkout_id = str(uuid.uuid4())
    assert taken(await checkout(orders, user, checkout_id)) == []
    # no cart is created for it, but the checkout is recorded
    assert suite.sql("cart", "SELECT count(*) FROM carts WHERE id = %s", (cart_id(user_id=user),)) == [(0,)]
    assert checkout_row(suite, checkout_id) == (cart_id(user_id=user), "taken", [])
    await add(orders, user, product["id"], 1)
    assert taken(await checkout(orders, user, checkout_id)) == []
    assert cart_rows(suite, cart_id(user_id=user)) == {product["id"]: 1}


async def test_concurrent_checkouts_of_one_cart_take_it_once(suite):
    orders = service_stub(suite, "orders")
    products = [await make_product(suite, stock=100) for _ in range(2)]
    users = [str(uuid.uuid4()) for _ in range(20)]
    for user in users:
        await add(orders, user, products[0]["id"], 2)
        await add(orders, user, products[1]["id"], 1)
    expected = [(products[0]["id"], 2), (products[1]["id"], 1)]
    # 20 carts, each checked out twice at once with different ids (a client retrying with a new
    # Idempotency-Key): exactly one of each pair gets the lines
    results = await asyncio.gather(*(checkout(orders, user, str(uuid.uuid4())) for user in users for _ in range(2)))
    for index, user in enumerate(users):
        pair = sorted((taken(results[2 * index]), taken(results[2 * index + 1])), key=len)
        assert pair == [[], expected], (user, pair)
        assert cart_rows(suite, cart_id(user_id=user)) == {}
    # the same id twice at once (a transparent retry): both answers show the one take
    for user in users:
        await add(orders, user, products[0]["id"], 1)
    same_ids = [str(uuid.uuid4()) for _ in users]
    results = await asyncio.gather(
        *(checkout(orders, user, same_id) for user, same_id in zip(users, same_ids, strict=True) for _ in range(2))
    )
    assert all(taken(result) == [(products[0]["id"], 1)] for result in results)
    assert all(cart_rows(suite, cart_id(user_id=user)) == {} for user in users)


async def test_restore_puts_the_lines_back_once(suite):
    orders = service_stub(suite, "orders")
    first, second = await make_product(suite, stock=50), await make_product(suite, stock=50)
    user = str(uuid.uuid4())
    await add(orders, user, first["id"], 3)
    await add(orders, user, second["id"], 1)
    checkout_id = str(uuid.uuid4())
    await checkout(orders, user, checkout_id)
    await add(orders, user, first["id"], 2)  # added after the checkout took the cart
    await restore(orders, checkout_id)
    assert cart_rows(suite, cart_id(user_id=user)) == {first["id"]: 5, second["id"]: 1}
    assert checkout_row(suite, checkout_id)[1] == "restored"
    before = snapshot(suite)
    await restore(orders, checkout_id)  # a repeat does nothing
    # a repeated checkout of a restored id answers what it took, and takes nothing again
    assert taken(await checkout(orders, user, checkout_id)) == [(first["id"], 3), (second["id"], 1)]
    assert snapshot(suite) == before
    read = await orders.GetCart(cart_pb2.GetCartRequest(owner=owner(user_id=user)))
    assert [(i.product_id, i.quantity) for i in read.cart.items] == [(first["id"], 5), (second["id"], 1)]


async def test_concurrent_restores_restore_once(suite):
    orders = service_stub(suite, "orders")
    product = await make_product(suite, stock=50)
    user = str(uuid.uuid4())
    await add(orders, user, product["id"], 2)
    checkout_id = str(uuid.uuid4())
    await checkout(orders, user, checkout_id)
    await asyncio.gather(*(restore(orders, checkout_id) for _ in range(10)))
    assert cart_rows(suite, cart_id(user_id=user)) == {product["id"]: 2}


async def test_restore_caps_lines_and_drops_what_does_not_fit(suite):
    products = [await make_product(suite, stock=200) for _ in range(3)]
    # a second cart process on the same database with a two-line limit, called as orders
    server = build_server(suite.service_settings("cart", grpc_address="127.0.0.1:0", max_cart_lines=2))
    await server.start()
    channel = make_channel(server.address, "cart", service_tokens=service_identity("orders"))
    try:
        orders = cart_pb2_grpc.CartServiceStub(channel)
        user = str(uuid.uuid4())
        await add(orders, user, products[0]["id"], 60)
        await add(orders, user, products[1]["id"], 1)
        checkout_id = str(uuid.uuid4())
        await checkout(orders, user, checkout_id)
        await add(orders, user, products[0]["id"], 70)
        await add(orders, user, products[2]["id"], 1)
        await restore(orders, checkout_id)
        # 70 + 60 capped at 100; the second product would be a third line: dropped, not an error
        assert cart_rows(suite, cart_id(user_id=user)) == {products[0]["id"]: 100, products[2]["id"]: 1}
        assert checkout_row(suite, checkout_id)[1] == "restored"
    finally:
        await channel.close()
        await server.stop(grace=0.5)


async def test_restoring_an_unknown_checkout_takes_nothing_later(suite):
    orders = service_stub(suite, "orders")
    product = await make_product(suite, stock=20)
    user = str(uuid.uuid4())
    await add(orders, user, product["id"], 2)
    checkout_id = str(uuid.uuid4())
    await restore(orders, checkout_id)  # nothing was taken: OK, the cart is untouched
    await restore(orders, checkout_id)
    assert cart_rows(suite, cart_id(user_id=user)) == {product["id"]: 2}
    assert checkout_row(suite, checkout_id) == (None, "restored", [])
    # a CheckoutCart with that id arriving after its compensation (a late retry) takes nothing
    assert taken(await checkout(orders, user, checkout_id)) == []
    assert cart_rows(suite, cart_id(user_id=user)) == {product["id"]: 2}


async def test_only_the_orders_service_may_take_or_restore(suite, http):
    orders = service_stub(suite, "orders")
    product = await make_product(suite, stock=20)
    user = await suite.register()
    user_id = user["user"]["id"]
    await add(orders, user_id, product["id"], 2)
    checkout_id = str(uuid.uuid4())
    await checkout(orders, user_id, checkout_id)
    await add(orders, user_id, product["id"], 1)
    session = str(uuid.uuid4())
    await service_stub(suite, "gateway").AddCartItem(
        cart_pb2.AddCartItemRequest(owner=owner(session_id=session), product_id=product["id"], quantity=1)
    )
    before = snapshot(suite)
    for name in ("gateway", "payments", "catalog", "auth", "cart"):
        stub = service_stub(suite, name)
        for request_owner in (owner(user_id=user_id), owner(session_id=session)):
            await expect(
                stub.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=request_owner, checkout_id=str(uuid.uuid4()))),
                grpc.StatusCode.PERMISSION_DENIED,
                "FORBIDDEN",
            )
        await expect(
            stub.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=checkout_id)),
            grpc.StatusCode.PERMISSION_DENIED,
            "FORBIDDEN",
        )
    # the user's own token (what the gateway forwards) may not take or restore the cart either
    metadata = [("authorization", user["headers"]["Authorization"])]
    stub = suite.stub("cart", as_service="gateway")
    await expect(
        stub.CheckoutCart(cart_pb2.CheckoutCartRequest(checkout_id=str(uuid.uuid4())), metadata=metadata),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORBIDDEN",
    )
    await expect(
        stub.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=checkout_id), metadata=metadata),
        grpc.StatusCode.PERMISSION_DENIED,
        "FORBIDDEN",
    )
    # no identity at all
    channel = make_channel(suite.common()["cart_target"], "cart", service_tokens=None)
    try:
        anonymous = cart_pb2_grpc.CartServiceStub(channel)
        await expect(
            anonymous.CheckoutCart(
                cart_pb2.CheckoutCartRequest(owner=owner(user_id=user_id), checkout_id=str(uuid.uuid4()))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await expect(
            anonymous.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=checkout_id)),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    finally:
        await channel.close()
    assert snapshot(suite) == before
    assert cart_rows(suite, cart_id(user_id=user_id)) == {product["id"]: 1}


async def test_bad_arguments_are_invalid_and_change_nothing(suite):
    orders = service_stub(suite, "orders")
    product = await make_product(suite, stock=20)
    user = str(uuid.uuid4())
    await add(orders, user, product["id"], 2)
    used = str(uuid.uuid4())
    other = str(uuid.uuid4())
    await add(orders, other, product["id"], 1)
    await checkout(orders, other, used)
    before = snapshot(suite)
    invalid = [
        orders.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(user_id=user))),
        orders.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(user_id=user), checkout_id="x" * 65)),
        orders.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(user_id=user), checkout_id="a\nb")),
        orders.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(), checkout_id=str(uuid.uuid4()))),
        orders.CheckoutCart(cart_pb2.CheckoutCartRequest(owner=owner(user_id="nope"), checkout_id=str(uuid.uuid4()))),
        orders.CheckoutCart(
            cart_pb2.CheckoutCartRequest(
                owner=owner(user_id=user, session_id=str(uuid.uuid4())), checkout_id=str(uuid.uuid4())
            )
        ),
        orders.RestoreCart(cart_pb2.RestoreCartRequest()),
        orders.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id="x" * 65)),
        orders.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id="\x00")),
    ]
    for call in invalid:
        error = await expect(call, grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR")
        assert error.fields, error
    # a checkout id already used for another cart
    await expect(checkout(orders, user, used), grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    assert snapshot(suite) == before
    # 64 characters is the longest id
    assert taken(await checkout(orders, user, "k" * 64)) == [(product["id"], 2)]


async def test_background_sweep_purges_old_checkouts(suite):
    orders = service_stub(suite, "orders")
    old_id, fresh_id = str(uuid.uuid4()), str(uuid.uuid4())
    for checkout_id in (old_id, fresh_id):
        await checkout(orders, str(uuid.uuid4()), checkout_id)
    suite.sql(
        "cart", "UPDATE cart_checkouts SET created_at = now() - interval '8 days' WHERE checkout_id = %s", (old_id,)
    )
    suite.sql(
        "cart", "UPDATE cart_checkouts SET created_at = now() - interval '6 days' WHERE checkout_id = %s", (fresh_id,)
    )
    server = build_server(suite.service_settings("cart", grpc_address="127.0.0.1:0", sweep_interval_seconds=0.2))
    await server.start()
    try:
        for _ in range(100):
            if checkout_row(suite, old_id) is None:
                break
            await asyncio.sleep(0.1)
    finally:
        await server.stop(grace=0.5)
    assert checkout_row(suite, old_id) is None
    assert checkout_row(suite, fresh_id) is not None
