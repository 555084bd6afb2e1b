"""A charge whose outcome the checkout never heard (issue 9, fault path 1): the answer is lost
while the provider still captures. Cancelling that PENDING order must wait for the outcome
(`409 PAYMENT_IN_PROGRESS` with `Retry-After`), so the money is never kept by a cancelled order:
the recovery loop learns the outcome (the order is PAID), and a cancel after that refunds it."""

from __future__ import annotations

import asyncio

import grpc

from tests.invariants.orders_helpers import add_to_cart, checkout, eventually, make_product, money


class LostAnswer:
    """Payments for the orders service whose first CreateCharge answer is lost: the caller sees
    DEADLINE_EXCEEDED at once, and the real charge reaches payments only after `release` is set
    (a provider still working when its caller gave up). Later charges (recovery) wait for
    `release` too; other calls go through."""

    def __init__(self, real) -> None:
        self.real = real
        self.release = asyncio.Event()
        self.lost = 0
        self.late: asyncio.Task | None = None

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def CreateCharge(self, request, **kwargs):  # noqa: N802 - the stub's method name
        if self.lost:

            async def after_release():
                await self.release.wait()
                return await self.real.CreateCharge(request, **kwargs)

            return after_release()
        self.lost += 1

        async def later():
            await self.release.wait()
            await self.real.CreateCharge(request)

        self.late = asyncio.ensure_future(later())

        async def lost_answer():
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="Deadline Exceeded"
            )

        return lost_answer()


async def test_a_pending_order_whose_charge_outcome_is_unknown_is_not_cancelled(suite):
    runtime = suite.servers["orders"].runtime
    user = await suite.register()
    product = await make_product(suite, price=3100, stock=5)
    await add_to_cart(suite, user, product)
    stubs = runtime.clients._stubs
    real = runtime.clients.payments
    fake = LostAnswer(real)
    stubs["payments"] = fake
    try:
        first = asyncio.create_task(checkout(suite, user))
        rows = await eventually(
            lambda: suite.sql(
                "orders",
                "SELECT id, status, stage FROM orders WHERE user_id = %s AND stage = 'reserved'",
                (user["user"]["id"],),
            ),
            timeout=15,
            interval=0.05,
        )
        order_id = rows[0][0]
        await eventually(lambda: fake.lost == 1, timeout=10, interval=0.05)

        response = await suite.http.post(f"/api/v1/orders/{order_id}/cancel", json={}, headers=user["headers"])
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "PAYMENT_IN_PROGRESS"
        assert int(response.headers["Retry-After"]) >= 1
        assert suite.sql("orders", "SELECT status FROM orders WHERE id = %s", (order_id,))[0][0] == "PENDING"
    finally:
        fake.release.set()
        if fake.late is not None:
            await asyncio.gather(fake.late, return_exceptions=True)
        stubs["payments"] = real
    await asyncio.gather(first, return_exceptions=True)

    # The charge happened at the provider: recovery finds it (same idempotency key) and the order is PAID.
    await eventually(
        lambda: suite.sql("orders", "SELECT status FROM orders WHERE id = %s", (order_id,))[0][0] == "PAID",
        timeout=30,
        interval=0.2,
    )
    [(total,)] = suite.sql("orders", "SELECT total_cents FROM orders WHERE id = %s", (order_id,))
    assert money(suite, order_id) == (total, 0)
    # Now the outcome is known, a cancel refunds what was captured.
    response = await suite.http.post(f"/api/v1/orders/{order_id}/cancel", json={}, headers=user["headers"])
    assert response.status_code == 200, response.text
    await eventually(lambda: money(suite, order_id) == (total, total), timeout=15, interval=0.2)
