"""Helpers of the orders tests: products (through the gateway, as an admin), carts, checkouts,
and the invariants checked in the catalog's and payments' databases."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

ADDRESS = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "line1": "1 Main Street",
    "city": "London",
    "postalCode": "N1 1AA",
    "country": "GB",
}

_state: dict[int, dict[str, Any]] = {}


# The suite lives for the whole run, longer than an access token (15 min): the admin signs in
# again once its tokens are this old.
ADMIN_SIGN_IN_AGAIN_AFTER_SECONDS = 5 * 60


async def admin(suite) -> dict[str, Any]:
    """One admin per suite (and a category for the products of these tests), signed in again
    before its access token can expire."""
    state = _state.setdefault(id(suite), {})
    if "admin" not in state:
        state["admin"] = await suite.admin()
        state["signed_in_at"] = time.monotonic()
        response = await suite.http.post(
            "/api/v1/categories",
            json={"slug": "orders-tests", "name": "Orders tests"},
            headers=state["admin"]["headers"],
        )
        assert response.status_code in (201, 409), response.text
    elif time.monotonic() - state["signed_in_at"] > ADMIN_SIGN_IN_AGAIN_AFTER_SECONDS:
        state["admin"] = await suite.sign_in(state["admin"])
        state["signed_in_at"] = time.monotonic()
    return state["admin"]


async def make_product(suite, *, price: int = 1000, stock: int = 10) -> str:
    boss = await admin(suite)
    sku = f"ORD-T-{uuid.uuid4().hex[:10].upper()}"
    response = await suite.http.post(
        "/api/v1/products",
        json={
            "sku": sku,
            "name": f"Orders test product {sku}",
            "description": "Made by an orders test.",
            "priceCents": price,
            "currency": "USD",
            "categorySlug": "orders-tests",
            "stock": stock,
        },
        headers=boss["headers"],
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


async def add_to_cart(suite, user, product_id: str, quantity: int = 1) -> None:
    response = await suite.http.post(
        "/api/v1/cart/items", json={"productId": product_id, "quantity": quantity}, headers=user["headers"]
    )
    assert response.status_code == 200, response.text


async def checkout(
    suite, user, *, key: str | None = None, token: str = "tok_visa", body: dict | None = None, timeout: float = 60
):
    key = key or str(uuid.uuid4())
    body = body or {"shippingAddress": ADDRESS, "payment": {"method": "card", "token": token}}
    return await suite.http.post(
        "/api/v1/orders", json=body, headers={**user["headers"], "Idempotency-Key": key}, timeout=timeout
    )


async def checkout_until_final(suite, user, *, key: str, timeout: float = 120):
    """What a client does: replays its key while the answer is "still running" (409
    REQUEST_IN_PROGRESS) or the connection failed (503), until the final answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await checkout(suite, user, key=key, timeout=timeout)
        in_progress = response.status_code == 409 and response.json()["error"]["code"] == "REQUEST_IN_PROGRESS"
        if not (in_progress or response.status_code == 503) or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.5)


async def register_many(suite, count: int) -> list[dict[str, Any]]:
    """Registers users concurrently (bcrypt makes this the slow part), a few at a time."""
    # 8 at once: the same total time on two cores (bcrypt is the work), and each registration waits
    # half as long, far from its deadline on a loaded machine (a `make chaos` run met it at 16).
    semaphore = asyncio.Semaphore(8)

    async def one():
        async with semaphore:
            return await suite.register()

    return await asyncio.gather(*(one() for _ in range(count)))


def stock(suite, product_id: str) -> int:
    return suite.sql("catalog", "SELECT stock FROM products WHERE id = %s", (product_id,))[0][0]


def reserved_and_sold(suite, product_id: str) -> tuple[int, int]:
    """(units held by RESERVED reservations, units in COMMITTED ones) of a product."""
    rows = suite.sql(
        "catalog",
        "SELECT r.status, COALESCE(SUM(l.quantity), 0) FROM reservation_lines l "
        "JOIN reservations r ON r.id = l.reservation_id WHERE l.product_id = %s GROUP BY r.status",
        (product_id,),
    )
    by_status = {status: int(total) for status, total in rows}
    return by_status.get("RESERVED", 0), by_status.get("COMMITTED", 0)


def reservation_status(suite, order_id: str) -> str | None:
    rows = suite.sql("catalog", "SELECT status FROM reservations WHERE id = %s", (order_id,))
    return rows[0][0] if rows else None


def money(suite, order_id: str) -> tuple[int, int]:
    """(captured, refunded) cents of an order in the payments database."""
    rows = suite.sql("payments", "SELECT captured_cents, refunded_cents FROM payments WHERE order_id = %s", (order_id,))
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def successful_charges(suite, order_ids: list[str]) -> int:
    rows = suite.sql(
        "payments",
        "SELECT count(*) FROM payments WHERE order_id = ANY(%s) AND captured_cents > 0",
        (order_ids,),
    )
    return int(rows[0][0])


async def eventually(check, timeout: float = 30.0, interval: float = 0.2):
    """Polls `check` (sync or async) until it returns a truthy value; returns it."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
