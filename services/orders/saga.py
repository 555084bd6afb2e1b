"""The checkout saga of DESIGN.md "Checkout", written as data (its request side, the idempotency
key and the recovery loop are `checkout.py`'s).

An order's `stage` (domain.Stage) says what is done. `Saga.handlers` maps each unfinished
stage to the one step that moves it on; every move is `repository.advance(from, to)` (lock, check
the stage, move, renew the lease) in the same transaction as what the step learned:

  NEW       CheckoutCart(checkout id = order id) takes the cart (it reads empty from now on, and a
            second checkout of it finds nothing), ReserveStock(reservation id = order id) reserves
            all lines or none and answers them priced                               → RESERVED
            empty cart: the order row is deleted, the key stores 409 CART_EMPTY
            unavailable product: the cart is restored, the row deleted, the key stores the 409
            short stock: CANCELLED, cart restored, the key stores 409 INSUFFICIENT_STOCK
  PRICED    (orders recorded by the previous version) ReserveStock of the stored lines → RESERVED
  RESERVED  a reservation older than RENEW_RESERVATION_AFTER_SECONDS is renewed or re-taken
            first; CreateCharge(idempotency key = order id, amount = total)         → DONE
            paid: PAID + outbox (commit the reservation with the purchases, email); the 201
            goes out at once and the outbox runs after it
            declined: PAYMENT_FAILED + outbox (release, restore the cart), run before the answer
            pending: the stage stays; recovery asks again (renewing the reservation first)

A final outcome writes the status, its history entry, the outbox rows it owes and the response
stored under the idempotency key in one transaction. The request that created the order drives
it while holding a lease; when the lease lapses (a crash, a lost downstream call) the recovery
loop or a replay of the key takes over from the stage. Transient downstream errors keep the stage.
Every step is idempotent downstream, so any step may run twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc

from services.orders import domain, repository
from services.orders.domain import OutboxKind, Stage
from services.orders.mapping import PAYMENT_STATUSES, error_to_stored, order_proto
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.clients import ServiceClients
from shop.lib.db import Database, Transaction, utcnow
from shop.lib.errors import Conflict, PaymentDeclined, RemoteError, ShopError, Unavailable, decode_rpc_error
from shop.lib.server import crash_point
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

# Downstream failures that say nothing about the request itself: retry later, keep the stage.
TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
Effects = list[tuple[OutboxKind, dict[str, Any]]]


@dataclass(frozen=True)
class Done:
    """A step ended the order's checkout. `body` is the 201 it stored under the key (the driving
    request answers it without reading the key again); None for an error, or when someone else
    finished it."""

    body: bytes | None = None


# What a step answers: Done, the order row as the step left it (the driver goes on with it
# without reading it again), or None (someone else moved it: read it again).
Step = Done | Any | None


def is_transient(remote: RemoteError) -> bool:
    return remote.grpc_code in TRANSIENT_CODES


def retry_later(remote: RemoteError) -> bool:
    """A downstream answer that says nothing final: the stage stays, a retry continues."""
    return is_transient(remote) or remote.code == "RESERVATION_BUSY"


class Saga:
    def __init__(
        self,
        *,
        settings,
        db: Database,
        clients: ServiceClients,
        hold: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clients = clients
        self.hold = hold
        # The saga as data: the one step that moves an order on from each unfinished stage.
        self.handlers: dict[Stage, Callable[[Any], Awaitable[Step]]] = {
            Stage.NEW: self.take_and_reserve,
            Stage.PRICED: self.reserve_stored_lines,
            Stage.RESERVED: self.charge,
        }

    async def drive(self, order_id: str, order: Any = None) -> Done:
        """Moves an order through its stages until it is done (`order`: its row, when the caller
        has just written it). The caller holds the lease. Transient downstream errors propagate
        (the stage stays; recovery retries later)."""
        for _ in range(10):
            if order is None:
                order = await repository.order_row(self.db, order_id)
            if order is None or order.stage == Stage.DONE:
                return Done()
            if self.hold is not None and await self.hold(f"before_{order.stage}", order.user_id):
                order = None  # a test held the saga here and may have changed the row: read it again
                continue
            step = await self.handlers[Stage(order.stage)](order)
            if isinstance(step, Done):
                return step
            order = step
        return Done()

    async def take_and_reserve(self, order: Any) -> Step:
        """NEW → RESERVED: take the cart, reserve its lines (priced by the catalog), record both."""
        taken = await self.clients.cart.CheckoutCart(
            cart_pb2.CheckoutCartRequest(owner=cart_pb2.CartOwner(user_id=order.user_id), checkout_id=order.id)
        )
        quantities: dict[str, int] = {}
        for line in taken.lines:
            if line.quantity > 0:
                quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
        crash_point(self.settings, "after_cart_taken")
        if not quantities:
            return await self.abandon(order, Stage.NEW, Conflict("Your cart is empty.", code="CART_EMPTY"))
        return await self.reserve(order, Stage.NEW, list(quantities.items()))

    async def reserve_stored_lines(self, order: Any) -> Step:
        """PRICED → RESERVED (an order priced by the previous version: its lines are stored)."""
        items = await repository.items_of(self.db, order.id)
        return await self.reserve(order, Stage.PRICED, [(item.product_id, item.quantity) for item in items])

    async def reserve(self, order: Any, stage: Stage, lines: list[tuple[str, int]]) -> Step:
        """One all-or-nothing ReserveStock, reservation id = order id; it answers the lines priced."""
        try:
            reservation = (await self.clients.catalog.ReserveStock(reserve_request(order.id, lines))).reservation
        except grpc.aio.AioRpcError as exc:
            remote = decode_rpc_error(exc)
            if retry_later(remote):
                raise
            return await self.not_reserved(order, stage, remote)
        if reservation.status in (catalog_pb2.RESERVATION_STATUS_RELEASED, catalog_pb2.RESERVATION_STATUS_RESTOCKED):
            # Released meanwhile (expired, or compensated by someone): never charge without stock.
            return await self.finish(
                order,
                stage,
                domain.CANCELLED,
                "The stock reservation lapsed.",
                error=lapsed(),
                effects=[(OutboxKind.RESTORE_CART, {})],
            )
        priced = list(reservation.priced_lines) or await self.price_from_catalog(lines)
        totals = domain.compute_totals([(line.unit_price_cents, line.quantity) for line in priced])
        now = utcnow()
        currency = priced[0].currency_code or "USD"
        lease = now + timedelta(seconds=self.settings.stale_after_seconds)
        new_lines = priced if stage == Stage.NEW else ()  # PRICED: the lines are stored already
        if not await repository.record_reservation(
            self.db, order.id, stage, lease=lease, now=now, totals=totals, currency=currency, lines=new_lines
        ):
            return None  # someone else moved it: read it again
        crash_point(self.settings, "after_stock_reserved")
        # RESERVED, as just written (the charge goes on with it; the lease and row are ours).
        return order._replace(
            stage=str(Stage.RESERVED),
            updated_at=now,
            lease_until=lease,
            subtotal_cents=totals.subtotal_cents,
            tax_cents=totals.tax_cents,
            shipping_cents=totals.shipping_cents,
            total_cents=totals.total_cents,
            currency=currency,
            reservation_state="reserved",
        )

    async def not_reserved(self, order: Any, stage: Stage, remote: RemoteError) -> Step:
        """The catalog refused the reservation (not a transient failure): the order ends here."""
        error = remote.to_shop_error()
        if remote.code == "PRODUCT_UNAVAILABLE":
            unavailable = Conflict(
                "Some products in your cart are no longer available.",
                code="PRODUCT_UNAVAILABLE",
                details=dict(error.details),
            )
            await self.restore_cart(order.id)
            return await self.abandon(order, stage, unavailable)
        short = remote.code == "INSUFFICIENT_STOCK"
        note = "Insufficient stock." if short else f"Stock not reserved: {remote.code}."
        return await self.finish(
            order,
            stage,
            domain.CANCELLED,
            note,
            error=error,
            effects=[(OutboxKind.RELEASE_RESERVATION, {}), (OutboxKind.RESTORE_CART, {})],
        )

    async def price_from_catalog(self, lines: list[tuple[str, int]]) -> list[catalog_pb2.ReservedLine]:
        """Prices from the products themselves (a catalog of the previous version answers no
        priced lines: a rolling update must keep checkout working)."""
        response = await self.clients.catalog.BatchGetProducts(
            catalog_pb2.BatchGetProductsRequest(product_ids=[product_id for product_id, _ in lines])
        )
        products = {product.id: product for product in response.products}
        return [
            catalog_pb2.ReservedLine(
                product_id=product_id,
                quantity=quantity,
                sku=products[product_id].sku,
                name=products[product_id].name,
                unit_price_cents=products[product_id].price_cents,
                currency_code=products[product_id].currency_code,
            )
            for product_id, quantity in lines
        ]

    async def restore_cart(self, order_id: str) -> None:
        await self.clients.cart.RestoreCart(cart_pb2.RestoreCartRequest(checkout_id=order_id))

    async def abandon(self, order: Any, stage: Stage, error: ShopError) -> Done | None:
        """Nothing to buy: the order row goes away; the key keeps the 409 for replays."""
        now = utcnow()
        async with self.db.write() as tx:
            if not await repository.advance(tx, order.id, stage, Stage.DONE, lease_seconds=0, now=now):
                return None
            await complete_key(tx, order.id, now, error=error)
            for statement in repository.DELETE_ORDER:
                await tx.execute(statement, order_id=order.id)
        return Done()

    async def charge(self, order: Any) -> Step:
        """RESERVED → DONE: CreateCharge, idempotent by order id (a repeat never charges twice),
        only while the stock is held."""
        if utcnow() - order.updated_at > timedelta(seconds=domain.RENEW_RESERVATION_AFTER_SECONDS):
            if not await self.renew_reservation(order):
                return Done()  # cancelled uncharged
        request = payments_pb2.CreateChargeRequest(
            order_id=order.id,
            user_id=order.user_id,
            amount_cents=order.total_cents,
            currency_code=order.currency,
            method=order.payment_method,
            token=order.payment_token,
        )
        payment: payments_pb2.Payment | None = None
        error: ShopError | None = None
        try:
            payment = (await self.clients.payments.CreateCharge(request)).payment
        except grpc.aio.AioRpcError as exc:
            remote = decode_rpc_error(exc)
            if is_transient(remote):
                raise
            error = remote.to_shop_error()
        if payment is not None and payment.status == payments_pb2.PAYMENT_STATUS_PENDING:
            payment = await self.reread_payment(order.id, payment)
        if payment is not None and payment.status == payments_pb2.PAYMENT_STATUS_PENDING:
            # The provider has not decided yet (a webhook will): keep the stage, ask again later.
            raise Unavailable("The payment is still pending.", code="PAYMENT_PENDING")
        if payment is not None and payment.status == payments_pb2.PAYMENT_STATUS_DECLINED:
            details = {"declineCode": payment.decline_code} if payment.decline_code else None
            error = PaymentDeclined("The payment was declined.", details=details)
        crash_point(self.settings, "after_charge")
        if error is None and payment is not None:
            done = await self.finish(
                order,
                Stage.RESERVED,
                domain.PAID,
                "Payment received.",
                payment=payment,
                effects=[(OutboxKind.COMMIT_RESERVATION, {}), (OutboxKind.EMAIL, {"template": "paid"})],
            )
            crash_point(self.settings, "after_paid_recorded")
            return done
        assert error is not None
        if payment is None and error.code == "PAYMENT_DECLINED":
            payment = await self.stored_payment(order.id)
        note = "Payment declined." if error.code == "PAYMENT_DECLINED" else f"Payment failed: {error.code}."
        done = await self.finish(
            order,
            Stage.RESERVED,
            domain.PAYMENT_FAILED,
            note,
            error=error,
            payment=payment,
            effects=[(OutboxKind.RELEASE_RESERVATION, {}), (OutboxKind.RESTORE_CART, {})],
        )
        crash_point(self.settings, "after_payment_failed_recorded")
        return done

    async def renew_reservation(self, order: Any) -> bool:
        """The reservation is extended, or re-taken if it lapsed, before a (late) charge. When the
        stock is gone and no charge was ever attempted, the order is cancelled uncharged; when a
        charge may exist, it goes on (money captured without stock is refunded by the outbox)."""
        items = await repository.items_of(self.db, order.id)
        lines = [(item.product_id, item.quantity) for item in items]
        try:
            await self.clients.catalog.ReserveStock(reserve_request(order.id, lines, renew=True))
            return True
        except grpc.aio.AioRpcError as exc:
            if retry_later(decode_rpc_error(exc)):
                raise
        if await self.stored_payment(order.id) is not None:
            return True
        await self.finish(
            order,
            Stage.RESERVED,
            domain.CANCELLED,
            "The stock reservation lapsed.",
            error=lapsed(),
            effects=[(OutboxKind.RELEASE_RESERVATION, {}), (OutboxKind.RESTORE_CART, {})],
        )
        return False

    async def stored_payment(self, order_id: str) -> payments_pb2.Payment | None:
        """The payment payments recorded for the order, if any (unknown on a transient error)."""
        listing = await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
        return listing.payments[0] if listing.payments else None

    async def reread_payment(self, order_id: str, payment: payments_pb2.Payment) -> payments_pb2.Payment:
        """A PENDING answer may be stale or the provider still deciding: read the stored payment again."""
        for delay in (0.0, 0.2, 0.5):
            await asyncio.sleep(delay)
            listing = await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
            for candidate in listing.payments:
                if candidate.status != payments_pb2.PAYMENT_STATUS_PENDING:
                    return candidate
        return payment

    async def finish(
        self,
        order: Any,
        stage: Stage,
        status: str,
        note: str,
        *,
        error: ShopError | None = None,
        payment: payments_pb2.Payment | None = None,
        effects: Effects = (),  # type: ignore[assignment]
    ) -> Done | None:
        """A final outcome: status + history + outbox rows + the key's stored response, one
        transaction. None when the order was no longer at `stage` (someone else moved it)."""
        now = utcnow()
        payment_status = order.payment_status
        if payment is not None:
            payment_status = PAYMENT_STATUSES.name(payment.status)
        elif error is not None and error.code == "PAYMENT_DECLINED":
            payment_status = "DECLINED"
        captured = order.captured_cents
        if payment is not None and error is None:
            captured = payment.captured_cents or payment.amount_cents
        async with self.db.write() as tx:
            finished = await repository.record_outcome(
                tx,
                order.id,
                stage,
                now=now,
                status=status,
                note=note,
                effects=effects,
                failure_code=error.code if error is not None else order.failure_code,
                payment_id=payment.id if payment is not None else order.payment_id,
                payment_status=payment_status,
                brand=payment.brand if payment is not None else order.payment_brand,
                last4=payment.last4 if payment is not None else order.payment_last4,
                captured=captured,
            )
            if finished is None:
                return None  # someone else moved it
            body = None
            if error is None:
                body = orders_pb2.CreateOrderResponse(order=order_proto(finished)).SerializeToString()
                await complete_key(tx, order.id, now, body=body)
            else:
                await complete_key(tx, order.id, now, error=error)
        return Done(body)


async def complete_key(
    tx: Transaction, order_id: str, now: datetime, *, body: bytes | None = None, error: ShopError | None = None
) -> None:
    """The checkout's idempotency key gets its final answer (a 201 body, or the stored error): the
    saga's outcome, or a cancel of a stalled checkout (`lifecycle.cancel`), in the caller's
    transaction."""
    await tx.execute(
        repository.COMPLETE_KEY,
        order_id=order_id,
        now=now,
        body=body,
        error=json.dumps(error_to_stored(error)) if error is not None else None,
    )


def reserve_request(
    order_id: str, lines: list[tuple[str, int]], *, renew: bool = False
) -> catalog_pb2.ReserveStockRequest:
    return catalog_pb2.ReserveStockRequest(
        reservation_id=order_id,
        lines=[catalog_pb2.StockLine(product_id=product_id, quantity=quantity) for product_id, quantity in lines],
        renew=renew,
    )


def lapsed() -> ShopError:
    return Conflict("The stock reservation lapsed; please check out again.", code="RESERVATION_LAPSED")
