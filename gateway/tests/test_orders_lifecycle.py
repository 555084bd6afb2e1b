"""After checkout: reading, listing, cancelling, fulfilment, refunds, payments and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.invariants.orders_helpers import (
    add_to_cart,
    admin,
    checkout,
    eventually,
    make_product,
    money,
    reservation_status,
    stock,
)


async def paid_order(suite, *, price: int = 2500, quantity: int = 1, stock_units: int = 10, user=None):
    user = user or await suite.register()
    product = await make_product(suite, price=price, stock=stock_units)
    await add_to_cart(suite, user, product, quantity)
    response = await checkout(suite, user)
    assert response.status_code == 201, response.text
    return user, product, response.json()["data"]


def db_order(suite, order_id: str) -> tuple:
    return suite.sql("orders", "SELECT status, refunded_cents, version FROM orders WHERE id = %s", (order_id,))[0]


async def set_status(suite, order_id, status, headers, **extra):
    return await suite.http.patch(
        f"/api/v1/orders/{order_id}/status", json={"status": status, **extra}, headers=headers
    )


async def refund(suite, order_id, headers, body, key=None):
    return await suite.http.post(
        f"/api/v1/orders/{order_id}/refunds",
        json=body,
        headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


# -- reading and listing ------------------------------------------------------------------------


async def test_other_users_get_404_and_admins_see_everything(suite):
    user, _product, order = await paid_order(suite)
    stranger = await suite.register()
    for path in ("", "/payments", "/events"):
        response = await suite.http.get(f"/api/v1/orders/{order['id']}{path}", headers=stranger["headers"])
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "ORDER_NOT_FOUND"
    response = await suite.http.post(f"/api/v1/orders/{order['id']}/cancel", json={}, headers=stranger["headers"])
    assert response.status_code == 404
    assert db_order(suite, order["id"])[0] == "PAID"
    unknown = await suite.http.get(f"/api/v1/orders/{uuid.uuid4()}", headers=user["headers"])
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ORDER_NOT_FOUND"
    boss = await admin(suite)
    assert (await suite.http.get(f"/api/v1/orders/{order['id']}", headers=boss["headers"])).status_code == 200
    assert (await suite.http.get(f"/api/v1/orders/{order['id']}")).status_code == 401
    # customers cannot move orders along or refund them
    response = await set_status(suite, order["id"], "PROCESSING", user["headers"])
    assert response.status_code == 403
    response = await refund(suite, order["id"], user["headers"], {"reason": "x"})
    assert response.status_code == 403


async def test_listing_is_newest_first_paginated_and_filtered(suite):
    user = await suite.register()
    product = await make_product(suite, price=1000, stock=20)
    ids = []
    for _ in range(3):
        await add_to_cart(suite, user, product)
        response = await checkout(suite, user)
        assert response.status_code == 201, response.text
        ids.append(response.json()["data"]["id"])
    await add_to_cart(suite, user, product)
    assert (await checkout(suite, user, token="tok_chargeDeclined")).status_code == 402
    other_user, _p, other_order = await paid_order(suite)

    seen: list[str] = []
    token = None
    while True:
        params = {"pageSize": 2, **({"pageToken": token} if token else {})}
        response = await suite.http.get("/api/v1/orders", params=params, headers=user["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["page"]["totalSize"] == 4
        seen.extend(o["id"] for o in body["data"])
        token = body["page"]["nextPageToken"]
        if not token:
            break
    assert len(seen) == 4 and seen[1:] == ids[::-1] and other_order["id"] not in seen
    paid = await suite.http.get("/api/v1/orders", params={"status": "PAID"}, headers=user["headers"])
    assert [o["id"] for o in paid.json()["data"]] == ids[::-1]
    # a customer's userId filter does not reach other users' orders
    response = await suite.http.get(
        "/api/v1/orders", params={"userId": other_user["user"]["id"]}, headers=user["headers"]
    )
    assert other_order["id"] not in [o["id"] for o in response.json()["data"]]
    boss = await admin(suite)
    response = await suite.http.get(
        "/api/v1/orders", params={"userId": other_user["user"]["id"]}, headers=boss["headers"]
    )
    assert [o["id"] for o in response.json()["data"]] == [other_order["id"]]
    for params in ({"pageSize": 0}, {"pageSize": 101}, {"status": "LOST"}, {"pageToken": "forged"}):
        response = await suite.http.get("/api/v1/orders", params=params, headers=user["headers"])
        assert response.status_code == 400, (params, response.text)
    # a token of another query is refused
    first = await suite.http.get("/api/v1/orders", params={"pageSize": 1}, headers=user["headers"])
    response = await suite.http.get(
        "/api/v1/orders",
        params={"pageSize": 1, "status": "PAID", "pageToken": first.json()["page"]["nextPageToken"]},
        headers=user["headers"],
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_PAGE_TOKEN"


# -- fulfilment ----------------------------------------------------------------------------------


async def test_fulfilment_walks_the_ladder_with_history_and_shipping_email(suite):
    user, _product, order = await paid_order(suite)
    boss = await admin(suite)
    headers = boss["headers"]
    oid = order["id"]
    for bad in ("SHIPPED", "DELIVERED"):
        response = await set_status(suite, oid, bad, headers, carrier="UPS", trackingNumber="1Z")
        assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_TRANSITION"
    assert db_order(suite, oid)[0] == "PAID"
    assert (await set_status(suite, oid, "PROCESSING", headers)).status_code == 200
    response = await set_status(suite, oid, "SHIPPED", headers, carrier="UPS")
    assert response.status_code == 400 and "trackingNumber" in response.json()["error"]["details"]["fields"]
    assert db_order(suite, oid)[0] == "PROCESSING"
    response = await set_status(suite, oid, "SHIPPED", headers, carrier="UPS", trackingNumber="1Z999")
    assert response.status_code == 200, response.text
    shipped = response.json()["data"]
    assert (shipped["status"], shipped["carrier"], shipped["trackingNumber"]) == ("SHIPPED", "UPS", "1Z999")
    response = await set_status(suite, oid, "PROCESSING", headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_TRANSITION"
    response = await set_status(suite, oid, "PAID", headers)
    assert response.status_code == 400  # not a status an admin can set
    # shipped orders cannot be cancelled
    response = await suite.http.post(f"/api/v1/orders/{oid}/cancel", json={}, headers=user["headers"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "ORDER_NOT_CANCELLABLE"
    delivered = await set_status(suite, oid, "DELIVERED", headers)
    assert delivered.status_code == 200
    history = delivered.json()["data"]["history"]
    assert [h["status"] for h in history] == ["PENDING", "PAID", "PROCESSING", "SHIPPED", "DELIVERED"]
    assert all(h["at"] for h in history)
    mails = [p.read_text() for p in suite.mail_dir.glob("*.eml")]
    assert any(f"Your order {order['number']} has shipped" in text and "1Z999" in text for text in mails)


# -- cancel --------------------------------------------------------------------------------------


async def test_cancel_refunds_restocks_and_mails(suite):
    user, product, order = await paid_order(suite, price=3000, quantity=2, stock_units=5)
    assert stock(suite, product) == 3
    response = await suite.http.post(
        f"/api/v1/orders/{order['id']}/cancel", json={"reason": "changed my mind"}, headers=user["headers"]
    )
    assert response.status_code == 200, response.text
    cancelled = response.json()["data"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["history"][-1]["status"] == "CANCELLED" and "changed my mind" in cancelled["history"][-1]["note"]
    assert stock(suite, product) == 5
    assert reservation_status(suite, order["id"]) == "RESTOCKED"
    captured, refunded = money(suite, order["id"])
    assert captured == refunded == order["totalCents"]
    mails = [p.read_text() for p in suite.mail_dir.glob("*.eml")]
    assert any(f"Your order {order['number']} is cancelled" in text for text in mails)
    # a second cancel is 409 and changes nothing
    again = await suite.http.post(f"/api/v1/orders/{order['id']}/cancel", json={}, headers=user["headers"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "ORDER_NOT_CANCELLABLE"
    assert stock(suite, product) == 5 and money(suite, order["id"]) == (captured, refunded)


async def test_admin_cancels_a_processing_order(suite):
    _user, product, order = await paid_order(suite, stock_units=4)
    boss = await admin(suite)
    assert (await set_status(suite, order["id"], "PROCESSING", boss["headers"])).status_code == 200
    response = await suite.http.post(f"/api/v1/orders/{order['id']}/cancel", headers=boss["headers"])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "CANCELLED"
    assert stock(suite, product) == 4
    assert money(suite, order["id"]) == (order["totalCents"], order["totalCents"])


async def test_failed_orders_cannot_be_cancelled(suite):
    user = await suite.register()
    product = await make_product(suite, stock=4)
    await add_to_cart(suite, user, product)
    response = await checkout(suite, user, token="tok_chargeDeclinedInsufficientFunds")
    assert response.status_code == 402
    [(order_id,)] = suite.sql("orders", "SELECT id FROM orders WHERE user_id = %s", (user["user"]["id"],))
    response = await suite.http.post(f"/api/v1/orders/{order_id}/cancel", json={}, headers=user["headers"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "ORDER_NOT_CANCELLABLE"
    assert db_order(suite, order_id)[0] == "PAYMENT_FAILED"


# -- refunds and payments -------------------------------------------------------------------------


async def test_partial_then_full_refund_makes_the_order_refunded_and_restocks(suite):
    user, product, order = await paid_order(suite, price=2000, quantity=1, stock_units=3)
    boss = await admin(suite)
    total = order["totalCents"]
    oid = order["id"]
    # more than captured: 409, nothing changed
    response = await refund(suite, oid, boss["headers"], {"amountCents": total + 1, "reason": "too much"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "REFUND_EXCEEDS_CAPTURED"
    assert money(suite, oid) == (total, 0) and db_order(suite, oid)[0] == "PAID"
    response = await refund(suite, oid, boss["headers"], {"amountCents": 0, "reason": "zero"})
    assert response.status_code == 400
    # refunds need a key
    response = await suite.http.post(f"/api/v1/orders/{oid}/refunds", json={"reason": "x"}, headers=boss["headers"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    key = str(uuid.uuid4())
    partial = await refund(suite, oid, boss["headers"], {"amountCents": 500, "reason": "scratched"}, key=key)
    assert partial.status_code == 201, partial.text
    data = partial.json()["data"]
    assert data["refund"]["amountCents"] == 500 and data["order"]["status"] == "PAID"
    replay = await refund(suite, oid, boss["headers"], {"amountCents": 500, "reason": "scratched"}, key=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == partial.json()
    reused = await refund(suite, oid, boss["headers"], {"amountCents": 600, "reason": "scratched"}, key=key)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert money(suite, oid) == (total, 500)
    response = await refund(suite, oid, boss["headers"], {"amountCents": total - 499, "reason": "too much"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "REFUND_EXCEEDS_CAPTURED"
    assert money(suite, oid) == (total, 500)
    rest = await refund(suite, oid, boss["headers"], {"reason": "the rest"})
    assert rest.status_code == 201, rest.text
    assert rest.json()["data"]["refund"]["amountCents"] == total - 500
    assert rest.json()["data"]["order"]["status"] == "REFUNDED"
    assert money(suite, oid) == (total, total)
    assert stock(suite, product) == 3
    # nothing remains
    response = await refund(suite, oid, boss["headers"], {"reason": "again"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "REFUND_EXCEEDS_CAPTURED"
    listing = await suite.http.get(f"/api/v1/orders/{oid}/payments", headers=user["headers"])
    assert listing.status_code == 200, listing.text
    payments = listing.json()["data"]
    assert len(payments["payments"]) == 1 and payments["payments"][0]["capturedCents"] == total
    assert payments["payments"][0]["refundedCents"] == total
    assert sorted(r["amountCents"] for r in payments["refunds"]) == sorted([500, total - 500])


async def test_refund_of_a_shipped_order_does_not_restock(suite):
    _user, product, order = await paid_order(suite, stock_units=2)
    boss = await admin(suite)
    for status, extra in (("PROCESSING", {}), ("SHIPPED", {"carrier": "DHL", "trackingNumber": "JD01"})):
        assert (await set_status(suite, order["id"], status, boss["headers"], **extra)).status_code == 200
    response = await refund(suite, order["id"], boss["headers"], {"reason": "lost in transit"})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["order"]["status"] == "REFUNDED"
    assert stock(suite, product) == 1
    assert reservation_status(suite, order["id"]) == "COMMITTED"


# -- Server-Sent Events ---------------------------------------------------------------------------


async def test_events_stream_status_changes(suite):
    user, _product, order = await paid_order(suite)
    boss = await admin(suite)
    async with suite.http.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()

        async def next_event():
            name = None
            async for line in lines:
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    assert name == "status"
                    return json.loads(line.split(":", 1)[1])
            raise AssertionError("stream ended")

        first = await asyncio.wait_for(next_event(), 10)
        assert first["status"] == "PAID" and first["order"]["id"] == order["id"]
        assert (await set_status(suite, order["id"], "PROCESSING", boss["headers"])).status_code == 200
        second = await asyncio.wait_for(next_event(), 10)
        assert second["status"] == "PROCESSING" and second["order"]["status"] == "PROCESSING"
        cancel = await suite.http.post(f"/api/v1/orders/{order['id']}/cancel", json={}, headers=user["headers"])
        assert cancel.status_code == 200
        third = await asyncio.wait_for(next_event(), 10)
        assert third["status"] == "CANCELLED"
        # a final status ends the stream
        rest = [line async for line in lines]
        assert not [line for line in rest if line.startswith("data:")]


async def test_events_see_changes_made_elsewhere_by_polling(suite):
    """A change written by another replica (straight into the database here) reaches the stream."""
    user, _product, order = await paid_order(suite)
    async with suite.http.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as response:
        events = response.aiter_lines()
        first = None
        async for line in events:
            if line.startswith("data:"):
                first = json.loads(line[5:])
                break
        assert first is not None, "no event"
        assert first["status"] == "PAID"
        # In a thread: the UPDATE may wait for the row lock of the order's outbox, which runs on
        # this event loop (the services are in-process); a blocking call here would deadlock it.
        await asyncio.to_thread(
            suite.sql,
            "orders",
            "WITH u AS (UPDATE orders SET status = 'PROCESSING' WHERE id = %s RETURNING id) "
            "INSERT INTO order_history (id, order_id, seq, status, note, at) "
            "SELECT %s, id, 3, 'PROCESSING', 'elsewhere', now() FROM u",
            (order["id"], str(uuid.uuid4())),
        )

        async def next_data():
            async for line in events:
                if line.startswith("data:"):
                    return json.loads(line[5:])

        second = await asyncio.wait_for(next_data(), 10)
        assert second["status"] == "PROCESSING" and second["note"] == "elsewhere"


async def test_a_client_leaving_the_stream_ends_the_watch(suite):
    hub = suite.gateway_state().streams
    user, _product, order = await paid_order(suite)
    async with suite.http.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                break
        assert order["id"] in hub._by_order
    # the connection is closed: the gateway's hub forgets the stream (and stops reading the order)
    await eventually(lambda: order["id"] not in hub._by_order, timeout=10, interval=0.05)


async def test_a_pending_order_is_not_cancellable_while_its_checkout_runs(suite):
    runtime = suite.servers["orders"].runtime
    user = await suite.register()
    product = await make_product(suite, stock=5)
    await add_to_cart(suite, user, product)
    gate = asyncio.Event()
    runtime.holds[("after_pending_recorded", user["user"]["id"])] = gate
    try:
        running = asyncio.create_task(checkout(suite, user))
        rows = await eventually(
            lambda: suite.sql("orders", "SELECT id FROM orders WHERE user_id = %s", (user["user"]["id"],)),
            timeout=10,
            interval=0.05,
        )
        order_id = rows[0][0]
        response = await suite.http.post(f"/api/v1/orders/{order_id}/cancel", json={}, headers=user["headers"])
        assert response.status_code == 409 and response.json()["error"]["code"] == "ORDER_NOT_CANCELLABLE"
        assert db_order(suite, order_id)[0] == "PENDING"
    finally:
        gate.set()
        runtime.holds.clear()
    assert (await running).status_code == 201
    assert db_order(suite, order_id)[0] == "PAID"


async def test_openapi_documents_the_order_routes(http):
    spec = (await http.get("/openapi.json")).json()
    expected = {
        ("/api/v1/orders", "post"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders/{orderId}", "get"),
        ("/api/v1/orders/{orderId}/cancel", "post"),
        ("/api/v1/orders/{orderId}/status", "patch"),
        ("/api/v1/orders/{orderId}/events", "get"),
        ("/api/v1/orders/{orderId}/payments", "get"),
        ("/api/v1/orders/{orderId}/refunds", "post"),
    }
    for path, method in expected:
        operation = spec["paths"][path][method]
        assert operation["summary"], (path, method)
    for path in ("/api/v1/orders", "/api/v1/orders/{orderId}/refunds"):
        operation = spec["paths"][path]["post"]
        assert "201" in operation["responses"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"])
    assert "text/event-stream" in spec["paths"]["/api/v1/orders/{orderId}/events"]["get"]["responses"]["200"]["content"]


async def test_a_quiet_stream_sends_keep_alive_comments(suite, monkeypatch):
    from gateway.routes import orders as routes

    monkeypatch.setattr(routes, "KEEPALIVE_SECONDS", 0.2)
    user, _product, order = await paid_order(suite)
    async with suite.http.stream("GET", f"/api/v1/orders/{order['id']}/events", headers=user["headers"]) as response:
        seen = []
        async for line in response.aiter_lines():
            seen.append(line)
            if line.startswith(": keep-alive"):
                break
        assert any(line.startswith("data:") for line in seen)
