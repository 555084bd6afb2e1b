"""The checkout's use cases without the stack: `Checkout` and `OutboxRelay` on a real PostgreSQL
database, with the downstream services replaced by scripted stubs (what each RPC answers), so
each stage handler, outcome and outbox handler is driven and observed directly."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from services.orders import domain
from services.orders.checkout import Checkout
from services.orders.config import OrdersSettings
from services.orders.models import OrdersBase
from services.orders.outbox import OutboxRelay
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.context import Caller
from shop.lib.db import Database
from shop.lib.errors import Conflict, InvalidArgument, ShopError, Unavailable, to_grpc_status
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

PRODUCT = "6a2d57a1-5933-4871-ae6f-1db05781378f"
ADDRESS = orders_pb2.ShippingAddress(
    first_name="Ada", last_name="Lovelace", line1="1 Main Street", city="London", postal_code="N1 1AA", country="GB"
)


def rpc_error(error: ShopError) -> grpc.aio.AioRpcError:
    """What a client sees when the service raised `error` (its rich status in the trailers)."""
    status = to_grpc_status(error)
    return grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), details=status.details
    )


class Stub:
    """A downstream service: each RPC answers from `answers[name]` (a message, an exception, or a
    callable of the request); every call is recorded in `calls`."""

    def __init__(self, calls: list[tuple[str, Any]], **answers: Any) -> None:
        self.calls = calls
        self.answers = answers

    def __getattr__(self, name: str):
        async def call(request, **_kwargs):
            self.calls.append((name, request))
            answer = self.answers[name]
            if callable(answer) and not isinstance(answer, type):
                answer = answer(request)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def reserved(request: catalog_pb2.ReserveStockRequest) -> catalog_pb2.ReserveStockResponse:
    return catalog_pb2.ReserveStockResponse(
        reservation=catalog_pb2.Reservation(
            id=request.reservation_id,
            status=catalog_pb2.RESERVATION_STATUS_RESERVED,
            priced_lines=[
                catalog_pb2.ReservedLine(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    sku="SKU-1",
                    name="Lamp",
                    unit_price_cents=2000,
                    currency_code="USD",
                )
                for line in request.lines
            ],
        )
    )


def payment(status: payments_pb2.PaymentStatus.ValueType, order_id: str = "") -> payments_pb2.Payment:
    return payments_pb2.Payment(
        id=str(uuid.uuid4()),
        order_id=order_id,
        status=status,
        amount_cents=5319,
        captured_cents=5319 if status == payments_pb2.PAYMENT_STATUS_SUCCEEDED else 0,
        brand="visa",
        last4="4242",
    )


class World:
    """A Checkout and its OutboxRelay over a fresh orders database and scripted downstream stubs."""

    def __init__(self, db: Database, **overrides: Any) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.mail: list[tuple[str, str]] = []
        answers: dict[str, dict[str, Any]] = {
            "cart": {
                "CheckoutCart": cart_pb2.CheckoutCartResponse(
                    lines=[cart_pb2.CheckoutLine(product_id=PRODUCT, quantity=2)]
                ),
                "RestoreCart": cart_pb2.RestoreCartResponse(),
            },
            "catalog": {
                "ReserveStock": reserved,
                "CommitReservation": catalog_pb2.CommitReservationResponse(),
                "ReleaseReservation": catalog_pb2.ReleaseReservationResponse(),
            },
            "payments": {
                "GetPaymentRules": payments_pb2.GetPaymentRulesResponse(
                    token_pattern="tok_visa|tok_chargeDeclined", max_age_seconds=60
                ),
                "CheckPaymentMethod": payments_pb2.CheckPaymentMethodResponse(),
                "CreateCharge": lambda r: payments_pb2.CreateChargeResponse(
                    payment=payment(payments_pb2.PAYMENT_STATUS_SUCCEEDED, r.order_id)
                ),
                "ListPayments": payments_pb2.ListPaymentsResponse(),
                "CreateRefund": payments_pb2.CreateRefundResponse(
                    payment=payment(payments_pb2.PAYMENT_STATUS_REFUNDED)
                ),
            },
            "auth": {},
        }
        for service, rpcs in overrides.items():
            answers[service].update(rpcs)
        clients = type("Clients", (), {})()
        for service, rpcs in answers.items():
            setattr(clients, service, Stub(self.calls, **rpcs))
        self.db = db
        self.settings = OrdersSettings(database_url=db.url, stale_after_seconds=0.5)
        self.outbox = OutboxRelay(settings=self.settings, db=db, clients=clients, mailer=self)
        self.checkout = Checkout(settings=self.settings, db=db, clients=clients, outbox=self.outbox)
        self.caller = Caller(user_id=str(uuid.uuid4()), role="CUSTOMER", claims={"email": "ada@example.com"})

    async def send(self, to: str, subject: str, body: str) -> None:  # the mailer
        self.mail.append((to, subject))

    def answer(self, service: str, rpc: str, value: Any) -> None:
        getattr(self.checkout.clients, service).answers[rpc] = value

    async def create(self, key: str | None = None, token: str = "tok_visa") -> orders_pb2.Order:
        request = orders_pb2.CreateOrderRequest(
            request_id=key or str(uuid.uuid4()), shipping_address=ADDRESS, payment_method="card", payment_token=token
        )
        body, _replayed = await self.checkout.create_order(self.caller, request, None)
        return orders_pb2.CreateOrderResponse.FromString(body).order

    async def settle(self) -> None:
        """Lets the side effects owed after an answer run."""
        while self.outbox._tasks:
            await asyncio.gather(*self.outbox._tasks)

    def called(self, name: str) -> list[Any]:
        return [request for rpc, request in self.calls if rpc == name]

    async def row(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import text

        async with self.db.engine.connect() as connection:
            return (await connection.execute(text(sql), params)).first()


@pytest.fixture
async def db(databases):
    database = Database(databases.create("orders_unit"))
    async with database.engine.begin() as connection:
        await connection.run_sync(OrdersBase.metadata.create_all)
    yield database
    await database.dispose()


async def test_a_paid_checkout_answers_then_commits_with_the_purchases_and_mails(db):
    world = World(db)
    order = await world.create()
    assert order.status == orders_pb2.ORDER_STATUS_PAID
    assert [(i.product_id, i.quantity, i.unit_price_cents, i.sku) for i in order.items] == [(PRODUCT, 2, 2000, "SKU-1")]
    assert (order.subtotal_cents, order.tax_cents, order.shipping_cents, order.total_cents) == (4000, 320, 999, 5319)
    assert [h.status for h in order.history] == [orders_pb2.ORDER_STATUS_PENDING, orders_pb2.ORDER_STATUS_PAID]
    # the cart was taken by order id, the stock reserved by order id, the charge keyed by order id
    assert [r.checkout_id for r in world.called("CheckoutCart")] == [order.id]
    assert [r.reservation_id for r in world.called("ReserveStock")] == [order.id]
    assert [(r.order_id, r.amount_cents) for r in world.called("CreateCharge")] == [(order.id, 5319)]
    await world.settle()
    assert [(r.reservation_id, r.user_id) for r in world.called("CommitReservation")] == [
        (order.id, world.caller.user_id)
    ]
    assert world.mail == [("ada@example.com", f"Your order {order.number} is paid")]
    row = await world.row("SELECT stage, reservation_state, payment_token FROM orders WHERE id = :id", id=order.id)
    assert tuple(row) == ("done", "committed", "")
    assert (await world.row("SELECT count(*) FROM outbox WHERE state <> 'done'"))[0] == 0


async def test_a_token_the_provider_never_charges_is_refused_before_anything_is_recorded(db):
    world = World(db)
    await world.create()
    with pytest.raises(ShopError) as refused:
        await world.create(token="tok_unknown")
    assert (refused.value.code, refused.value.fields) == (
        "INVALID_PAYMENT_TOKEN",
        {"payment.token": ["The payment token is not valid."]},
    )
    assert (await world.row("SELECT count(*) FROM orders"))[0] == 1  # the first, paid one only
    assert (await world.row("SELECT count(*) FROM idempotency_keys"))[0] == 1
    assert len(world.called("CheckoutCart")) == 1
    # payments' rule was asked for once and kept; no check per checkout
    assert len(world.called("GetPaymentRules")) == 1 and world.called("CheckPaymentMethod") == []


async def test_payments_of_the_previous_version_check_each_token_themselves(db):
    unimplemented = grpc.aio.AioRpcError(
        grpc.StatusCode.UNIMPLEMENTED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="Method not found!"
    )
    refused = rpc_error(InvalidArgument("The payment token is not valid.", code="INVALID_PAYMENT_TOKEN"))
    world = World(db, payments={"GetPaymentRules": unimplemented})
    await world.create()
    world.answer("payments", "CheckPaymentMethod", refused)
    with pytest.raises(grpc.aio.AioRpcError):
        await world.create(token="tok_unknown")
    assert [r.token for r in world.called("CheckPaymentMethod")] == ["tok_visa", "tok_unknown"]
    assert len(world.called("GetPaymentRules")) == 1  # UNIMPLEMENTED is remembered too
    assert (await world.row("SELECT count(*) FROM orders"))[0] == 1


async def test_an_empty_cart_leaves_no_order_and_the_key_keeps_the_409(db):
    world = World(db, cart={"CheckoutCart": cart_pb2.CheckoutCartResponse()})
    with pytest.raises(Conflict) as first:
        await world.create(key="k-empty")
    assert first.value.code == "CART_EMPTY"
    assert (await world.row("SELECT count(*) FROM orders"))[0] == 0
    with pytest.raises(Conflict) as replay:
        await world.create(key="k-empty")
    assert replay.value.code == "CART_EMPTY" and getattr(replay.value, "replayed", False)
    assert len(world.called("CheckoutCart")) == 1  # the replay answered from the key


async def test_short_stock_cancels_and_gives_the_cart_back_before_answering(db):
    short = rpc_error(Conflict("Not enough stock.", code="INSUFFICIENT_STOCK", details={"productIds": [PRODUCT]}))
    world = World(db, catalog={"ReserveStock": short})
    with pytest.raises(ShopError) as refused:
        await world.create()
    assert refused.value.code == "INSUFFICIENT_STOCK" and refused.value.details["productIds"] == [PRODUCT]
    # both compensations ran before the answer
    assert len(world.called("RestoreCart")) == 1 and len(world.called("ReleaseReservation")) == 1
    row = await world.row("SELECT status, failure_code, stage FROM orders")
    assert tuple(row) == (domain.CANCELLED, "INSUFFICIENT_STOCK", "done")
    assert world.called("CreateCharge") == []


async def test_a_declined_charge_fails_the_order_and_restores_the_cart_before_answering(db):
    declined = rpc_error(Conflict("The payment was declined.", code="PAYMENT_DECLINED"))
    world = World(db, payments={"CreateCharge": declined})
    with pytest.raises(ShopError) as refused:
        await world.create(token="tok_chargeDeclined")
    assert refused.value.code == "PAYMENT_DECLINED"
    assert len(world.called("RestoreCart")) == 1 and len(world.called("ReleaseReservation")) == 1
    row = await world.row("SELECT status, payment_status FROM orders")
    assert tuple(row) == (domain.PAYMENT_FAILED, "DECLINED")


async def test_a_pending_payment_keeps_the_stage_and_recovery_renews_the_stock_before_asking_again(db):
    pending = payments_pb2.CreateChargeResponse(payment=payment(payments_pb2.PAYMENT_STATUS_PENDING))
    world = World(
        db,
        payments={
            "CreateCharge": pending,
            "ListPayments": payments_pb2.ListPaymentsResponse(payments=[payment(payments_pb2.PAYMENT_STATUS_PENDING)]),
        },
    )
    with pytest.raises(Unavailable):
        await world.create()
    row = await world.row("SELECT id, status, stage, lease_until FROM orders")
    order_id = row[0]
    assert (row[1], row[2], row[3]) == (domain.PENDING, "reserved", None)  # the lease was given up at once
    # Minutes later the provider decided; the reservation is old, so it is renewed before the charge.
    from sqlalchemy import text

    async with db.engine.begin() as connection:
        await connection.execute(text("UPDATE orders SET updated_at = now() - interval '10 minutes'"))
    world.answer(
        "payments",
        "CreateCharge",
        lambda r: payments_pb2.CreateChargeResponse(payment=payment(payments_pb2.PAYMENT_STATUS_SUCCEEDED, r.order_id)),
    )
    assert await world.checkout.recover_once() == 1
    renewals = [r for r in world.called("ReserveStock") if r.renew]
    assert [(r.reservation_id, [(line.product_id, line.quantity) for line in r.lines]) for r in renewals] == [
        (order_id, [(PRODUCT, 2)])
    ]
    assert (await world.row("SELECT status FROM orders"))[0] == domain.PAID


async def test_a_paid_order_whose_stock_is_gone_is_cancelled_and_refunded(db):
    released = rpc_error(Conflict("The reservation was released.", code="RESERVATION_RELEASED"))
    world = World(db, catalog={"CommitReservation": released})
    order = await world.create()
    assert order.status == orders_pb2.ORDER_STATUS_PAID
    await world.settle()
    row = await world.row("SELECT status, failure_code, reservation_state FROM orders")
    assert tuple(row) == (domain.CANCELLED, "STOCK_UNAVAILABLE", "released")
    assert [(r.order_id, r.amount_cents, r.request_id) for r in world.called("CreateRefund")] == [
        (order.id, 0, f"cancel-{order.id}")
    ]  # 0: all that remains captured
    assert world.mail[-1][1].startswith(f"Your order {order.number}") and "cancel" in world.mail[-1][1].lower()


def test_every_unfinished_stage_and_every_outbox_kind_has_one_handler(db):
    world = World(db)
    assert set(world.checkout.handlers) == set(domain.UNFINISHED_STAGES)
    assert set(world.outbox.handlers) == set(domain.OutboxKind)
