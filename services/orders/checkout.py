"""Checkout: the crash-safe saga of DESIGN.md "Checkout", its idempotency keys and its recovery.

Stages (orders.stage) and what moves an order from each (every step is idempotent):
  new       → read the cart, price it from the catalog, snapshot lines and totals  → priced
              (empty cart / unavailable product: the order row is deleted, the key stores the 409)
  priced    → ReserveStock(reservation id = order id), all lines or none           → reserved
              (short stock: CANCELLED, nothing reserved, the key stores the 409)
  reserved  → CreateCharge(idempotency key = order id, amount = total)             → done
              paid: PAID + outbox (commit reservation, clear cart, record purchases, email)
              declined: PAYMENT_FAILED + outbox (release reservation), cart kept
Each stage change is one transaction that also writes the outbox rows of the side effects that
follow and, for a final outcome, the response stored under the idempotency key. The request that
created the order drives it while holding a lease (orders.lease_until, renewed at every step); when
the lease lapses (a crash, a lost downstream call) the recovery loop or a replay of the key takes
over and drives it from its stage. Transient downstream errors leave the stage unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from google.protobuf.json_format import MessageToDict
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from services.orders import domain, repository
from services.orders.mapping import error_from_stored, error_to_stored, http_status_of, order_proto
from services.orders.models import IdempotencyKey, Order, OrderHistory, OrderItem, OutboxEntry
from shop.auth.v1 import auth_pb2
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.context import Caller
from shop.lib.db import new_id, utcnow
from shop.lib.errors import (
    Aborted,
    Conflict,
    InvalidArgument,
    NotFound,
    PaymentDeclined,
    RemoteError,
    ShopError,
    Unavailable,
    ValidationError,
    decode_rpc_error,
)
from shop.lib.server import crash_point
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

if TYPE_CHECKING:
    from services.orders.server import Runtime

log = structlog.get_logger("orders.checkout")

OPERATION = "create_order"
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
_PAYMENT_DECLINED_STATUS = payments_pb2.PaymentStatus.Name(payments_pb2.PAYMENT_STATUS_DECLINED)


def is_transient(remote: RemoteError) -> bool:
    return remote.grpc_code in TRANSIENT_CODES


class Replay:
    """The stored outcome of an earlier request with the same key."""

    def __init__(self, response: bytes | None, error: ShopError | None) -> None:
        self.response = response
        self.error = error


class Checkout:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.settings = runtime.settings
        self.db = runtime.db
        self._tasks: set[asyncio.Future] = set()

    # -- the RPC -------------------------------------------------------------------------------

    async def create_order(
        self, caller: Caller, request: orders_pb2.CreateOrderRequest, bearer: str | None
    ) -> tuple[bytes, bool]:
        """Returns the serialized CreateOrderResponse and whether it is a replay; raises the
        outcome's error (stored too) otherwise."""
        user_id = caller.user_id or ""
        key = request.request_id
        domain.validate_idempotency_key(key)
        fingerprint = request.request_fingerprint or request_fingerprint(request)

        async with self.db.transaction() as session:
            existing = await repository.get_idempotency(session, user_id, key)
        if existing is not None:
            return await self.replay(existing, fingerprint)

        address = await self.destination(user_id, request)
        domain.validate_payment(request.payment_method, request.payment_token)
        # A token the provider can never charge is refused before anything is recorded.
        await self.rt.clients.payments.CheckPaymentMethod(
            payments_pb2.CheckPaymentMethodRequest(method=request.payment_method, token=request.payment_token)
        )
        email = await self.customer_email(caller, bearer)

        order_id = new_id()
        for _attempt in range(5):
            try:
                await self.record_pending(order_id, user_id, key, fingerprint, address, request, email)
                break
            except IntegrityError:
                async with self.db.transaction() as session:
                    existing = await repository.get_idempotency(session, user_id, key)
                if existing is not None:  # a concurrent request with the same key won
                    return await self.replay(existing, fingerprint)
                # else: the order number collided; draw another
        else:  # pragma: no cover - 5 collisions in a row among 31^6 numbers a day
            raise Aborted("Could not allocate an order number; retry.", code="ABORTED")
        self.rt.notify(order_id)
        crash_point(self.settings, "after_pending_recorded")
        await self.rt.hold("after_pending_recorded", user_id)
        await self.drive_or_let_go(order_id)
        return await self.outcome(user_id, key, replayed=False)

    async def replay(self, row: IdempotencyKey, fingerprint: str) -> tuple[bytes, bool]:
        if row.operation != OPERATION or row.fingerprint != fingerprint:
            raise key_reused()
        if row.state != "completed":
            # The first request is still running, or died: take over only when its lease lapsed.
            async with self.db.transaction() as session:
                claimed = await repository.claim_lease(session, row.order_id, self.settings.stale_after_seconds)
            if not claimed:
                raise in_progress()
            await self.drive_or_let_go(row.order_id)
        return await self.outcome(row.user_id, row.key, replayed=True)

    async def outcome(self, user_id: str, key: str, *, replayed: bool) -> tuple[bytes, bool]:
        async with self.db.transaction() as session:
            row = await repository.get_idempotency(session, user_id, key)
        if row is None or row.state != "completed":
            raise in_progress()
        if row.order_id:
            await self.rt.outbox.run_order(row.order_id)
        if row.error is not None:
            error = error_from_stored(row.error)
            error.replayed = replayed  # type: ignore[attr-defined]
            raise error
        assert row.response_body is not None
        return row.response_body, replayed

    # -- inputs --------------------------------------------------------------------------------

    async def destination(self, user_id: str, request: orders_pb2.CreateOrderRequest) -> dict[str, str]:
        which = request.WhichOneof("destination")
        if which == "shipping_address":
            raw = {name: getattr(request.shipping_address, name) for name in domain.ADDRESS_FIELDS}
            return domain.validate_address(raw)
        if which == "address_id" and request.address_id:
            try:
                response = await self.rt.clients.auth.GetAddress(
                    auth_pb2.GetAddressRequest(user_id=user_id, address_id=request.address_id)
                )
            except grpc.aio.AioRpcError as exc:
                remote = decode_rpc_error(exc)
                if remote.grpc_code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND") from None
                raise
            address = response.address
            raw = {name: getattr(address, name) for name in domain.ADDRESS_FIELDS}
            return domain.validate_address(raw, prefix="address")
        raise ValidationError({"shippingAddress": ["shippingAddress or addressId is required"]})

    async def customer_email(self, caller: Caller, bearer: str | None) -> str:
        """The customer's email (for the order emails), snapshotted into the order."""
        if not bearer:
            return ""
        try:
            response = await self.rt.clients.auth.GetCurrentUser(
                auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {bearer}"),), timeout=5
            )
            return response.user.email
        except grpc.aio.AioRpcError as exc:
            log.warning("checkout.email_unknown", user_id=caller.user_id, code=exc.code().name)
            return ""

    async def record_pending(
        self,
        order_id: str,
        user_id: str,
        key: str,
        fingerprint: str,
        address: dict[str, str],
        request: orders_pb2.CreateOrderRequest,
        email: str,
    ) -> None:
        """Step 1: the order PENDING with its idempotency key, in one transaction."""
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.stale_after_seconds)
        async with self.db.transaction() as session:
            session.add(
                IdempotencyKey(
                    user_id=user_id,
                    key=key,
                    operation=OPERATION,
                    fingerprint=fingerprint,
                    state="in_progress",
                    order_id=order_id,
                    locked_until=lease,
                    created_at=now,
                )
            )
            number = domain.order_number(now)
            session.add(
                Order(
                    id=order_id,
                    number=number,
                    user_id=user_id,
                    customer_email=email,
                    idempotency_key=key,
                    status=domain.PENDING,
                    stage=domain.STAGE_NEW,
                    shipping_address=address,
                    payment_method=request.payment_method,
                    payment_token=request.payment_token,
                    lease_until=lease,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(OrderHistory(order_id=order_id, seq=1, status=domain.PENDING, note="Checkout started.", at=now))

    # -- the saga ------------------------------------------------------------------------------

    async def drive_or_let_go(self, order_id: str) -> None:
        """Drives an order for a request; on a transient failure gives the lease up at once, so the
        client's retry (same key) or the recovery loop continues without waiting for it to lapse.
        The saga runs in its own task: a cancelled RPC (client gone, deadline, connection recycled)
        does not stop it halfway; the client's replay finds the outcome."""
        task = asyncio.ensure_future(self._drive_releasing(order_id))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        await asyncio.shield(task)

    def _forget(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("checkout.drive_ended", error=repr(task.exception()))

    async def _drive_releasing(self, order_id: str) -> None:
        try:
            await self.drive(order_id)
        except (grpc.aio.AioRpcError, Unavailable):
            async with self.db.transaction() as session:
                await repository.release_lease(session, order_id)
            raise

    async def drive(self, order_id: str) -> None:
        """Moves an order through its stages until it is done. The caller holds the lease.
        Transient downstream errors propagate (the stage stays; recovery retries later)."""
        for _ in range(10):
            async with self.db.transaction() as session:
                order = await repository.get_order(session, order_id)
                items = []
                if order is not None and order.stage in (domain.STAGE_PRICED, domain.STAGE_RESERVED):
                    items = (await repository.load_view(session, order)).items
            if order is None or order.stage == domain.STAGE_DONE:
                return
            if order.stage == domain.STAGE_NEW:
                await self.price(order)
            elif order.stage == domain.STAGE_PRICED:
                await self.reserve(order, items)
            elif order.stage == domain.STAGE_RESERVED:
                await self.charge(order)
            else:  # pragma: no cover - unknown stage
                raise RuntimeError(f"unknown stage {order.stage}")

    async def price(self, order: Order) -> None:
        """Step 2: read the cart (service identity, owner.user_id) and price it in one BatchGetProducts."""
        cart = (
            await self.rt.clients.cart.GetCart(
                cart_pb2.GetCartRequest(owner=cart_pb2.CartOwner(user_id=order.user_id))
            )
        ).cart
        quantities: dict[str, int] = {}
        for item in cart.items:
            if item.quantity > 0:
                quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
        if not quantities:
            await self.abandon(order, Conflict("Your cart is empty.", code="CART_EMPTY"))
            return
        ids = list(quantities)
        products = {
            product.id: product
            for product in (
                await self.rt.clients.catalog.BatchGetProducts(catalog_pb2.BatchGetProductsRequest(product_ids=ids))
            ).products
        }
        active = catalog_pb2.PRODUCT_STATUS_ACTIVE
        unavailable = [pid for pid in ids if pid not in products or products[pid].status != active]
        if unavailable:
            await self.abandon(
                order,
                Conflict(
                    "Some products in your cart are no longer available.",
                    code="PRODUCT_UNAVAILABLE",
                    details={"productIds": unavailable},
                ),
            )
            return
        lines = [(products[pid], quantities[pid]) for pid in ids]
        totals = domain.compute_totals([(product.price_cents, quantity) for product, quantity in lines])
        currency = lines[0][0].currency_code or "USD"
        now = utcnow()
        async with self.db.transaction() as session:
            current = await repository.get_order(session, order.id, for_update=True)
            if current is None or current.stage != domain.STAGE_NEW:
                return
            for position, (product, quantity) in enumerate(lines):
                session.add(
                    OrderItem(
                        order_id=order.id,
                        position=position,
                        product_id=product.id,
                        sku=product.sku,
                        name=product.name,
                        unit_price_cents=product.price_cents,
                        quantity=quantity,
                        line_total_cents=product.price_cents * quantity,
                    )
                )
            current.subtotal_cents = totals.subtotal_cents
            current.tax_cents = totals.tax_cents
            current.shipping_cents = totals.shipping_cents
            current.total_cents = totals.total_cents
            current.currency = currency
            current.stage = domain.STAGE_PRICED
            current.updated_at = now
            current.lease_until = now + timedelta(seconds=self.settings.stale_after_seconds)
        crash_point(self.settings, "after_priced")

    async def abandon(self, order: Order, error: ShopError) -> None:
        """Nothing to buy: the order row goes away; the key keeps the 409 for replays."""
        async with self.db.transaction() as session:
            current = await repository.get_order(session, order.id, for_update=True)
            if current is None or current.stage != domain.STAGE_NEW:
                return
            await self.complete_key(session, order.id, error=error)
            for table in (OrderItem, OrderHistory, OutboxEntry):
                await session.execute(delete(table).where(table.order_id == order.id))
            await session.execute(delete(Order).where(Order.id == order.id))

    async def reserve(self, order: Order, items: list[OrderItem]) -> None:
        """Step 3: one all-or-nothing ReserveStock, reservation id = order id."""
        request = catalog_pb2.ReserveStockRequest(
            reservation_id=order.id,
            lines=[catalog_pb2.StockLine(product_id=item.product_id, quantity=item.quantity) for item in items],
        )
        try:
            reservation = (await self.rt.clients.catalog.ReserveStock(request)).reservation
        except grpc.aio.AioRpcError as exc:
            remote = decode_rpc_error(exc)
            if is_transient(remote) or remote.code == "RESERVATION_BUSY":
                raise
            error = remote.to_shop_error()
            if remote.code == "INSUFFICIENT_STOCK" and not error.details.get("productIds"):
                error.details["productIds"] = await self.short_products(items)
            short = remote.code == "INSUFFICIENT_STOCK"
            note = "Insufficient stock." if short else f"Stock not reserved: {remote.code}."
            await self.finish(
                order.id,
                domain.STAGE_PRICED,
                domain.CANCELLED,
                note,
                error=error,
                outbox=[("release_reservation", {})],
            )
            return
        if reservation.status in (catalog_pb2.RESERVATION_STATUS_RELEASED, catalog_pb2.RESERVATION_STATUS_RESTOCKED):
            # Released meanwhile (expired, or compensated by someone): never charge without stock.
            await self.finish(
                order.id,
                domain.STAGE_PRICED,
                domain.CANCELLED,
                "The stock reservation lapsed.",
                error=Conflict("The stock reservation lapsed; please check out again.", code="RESERVATION_LAPSED"),
            )
            return
        now = utcnow()
        async with self.db.transaction() as session:
            current = await repository.get_order(session, order.id, for_update=True)
            if current is None or current.stage != domain.STAGE_PRICED:
                return
            current.stage = domain.STAGE_RESERVED
            current.reservation_state = "reserved"
            current.updated_at = now
            current.lease_until = now + timedelta(seconds=self.settings.stale_after_seconds)
        crash_point(self.settings, "after_stock_reserved")

    async def short_products(self, items: list[OrderItem]) -> list[str]:
        try:
            response = await self.rt.clients.catalog.BatchGetProducts(
                catalog_pb2.BatchGetProductsRequest(product_ids=[item.product_id for item in items])
            )
        except grpc.aio.AioRpcError:
            return [item.product_id for item in items]
        stock = {product.id: product.stock for product in response.products}
        return [item.product_id for item in items if stock.get(item.product_id, 0) < item.quantity]

    async def charge(self, order: Order) -> None:
        """Step 4: CreateCharge, idempotent by order id (a repeat never charges twice)."""
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
            payment = (await self.rt.clients.payments.CreateCharge(request)).payment
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
        if payment is not None and payments_pb2.PaymentStatus.Name(payment.status) == _PAYMENT_DECLINED_STATUS:
            details = {"declineCode": payment.decline_code} if payment.decline_code else None
            error = PaymentDeclined("The payment was declined.", details=details)
        crash_point(self.settings, "after_charge")
        if error is None and payment is not None:
            await self.finish(
                order.id,
                domain.STAGE_RESERVED,
                domain.PAID,
                "Payment received.",
                payment=payment,
                outbox=[
                    ("commit_reservation", {}),
                    ("clear_cart", {}),
                    ("record_purchases", {}),
                    ("email", {"template": "paid"}),
                ],
            )
            crash_point(self.settings, "after_paid_recorded")
            return
        assert error is not None
        if payment is None and error.code == "PAYMENT_DECLINED":
            payment = await self.stored_payment(order.id)
        note = "Payment declined." if error.code == "PAYMENT_DECLINED" else f"Payment failed: {error.code}."
        await self.finish(
            order.id,
            domain.STAGE_RESERVED,
            domain.PAYMENT_FAILED,
            note,
            error=error,
            payment=payment,
            outbox=[("release_reservation", {})],
        )
        crash_point(self.settings, "after_payment_failed_recorded")

    async def stored_payment(self, order_id: str) -> payments_pb2.Payment | None:
        """The payment payments recorded for the order (for the order's payment summary), if any."""
        try:
            listing = await self.rt.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
        except grpc.aio.AioRpcError:
            return None
        return listing.payments[0] if listing.payments else None

    async def reread_payment(self, order_id: str, payment: payments_pb2.Payment) -> payments_pb2.Payment:
        """A PENDING answer may be stale or the provider still deciding: read the stored payment again."""
        for delay in (0.0, 0.2, 0.5):
            await asyncio.sleep(delay)
            listing = await self.rt.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
            for candidate in listing.payments:
                if candidate.status != payments_pb2.PAYMENT_STATUS_PENDING:
                    return candidate
        return payment

    async def finish(
        self,
        order_id: str,
        expected_stage: str,
        status: str,
        note: str,
        *,
        error: ShopError | None = None,
        payment: payments_pb2.Payment | None = None,
        outbox: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    ) -> None:
        """A final outcome: status + history + outbox rows + the key's stored response, one transaction."""
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id, for_update=True)
            if order is None or order.stage != expected_stage:
                return
            order.stage = domain.STAGE_DONE
            order.lease_until = None
            order.payment_token = ""
            if error is not None:
                order.failure_code = error.code
            if payment is not None:
                order.payment_id = payment.id
                order.payment_status = payments_pb2.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_")
                order.payment_brand = payment.brand
                order.payment_last4 = payment.last4
                if error is None:
                    order.captured_cents = payment.captured_cents or payment.amount_cents
            elif error is not None and error.code == "PAYMENT_DECLINED":
                order.payment_status = "DECLINED"
            await repository.set_status(session, order, status, note)
            for kind, payload in outbox:
                await repository.add_outbox(session, order.id, kind, payload)
            await session.flush()
            if error is None:
                view = await repository.load_view(session, order)
                body = orders_pb2.CreateOrderResponse(order=order_proto(view)).SerializeToString()
                await self.complete_key(session, order.id, body=body)
            else:
                await self.complete_key(session, order.id, error=error)
        self.rt.notify(order_id)

    async def complete_key(
        self, session, order_id: str, *, body: bytes | None = None, error: ShopError | None = None
    ) -> None:
        row = await repository.idempotency_for_order(session, order_id)
        if row is None or row.state == "completed":
            return
        row.state = "completed"
        row.completed_at = utcnow()
        row.locked_until = None
        if error is not None:
            row.response_status = http_status_of(error)
            row.error = error_to_stored(error)
        else:
            row.response_status = 201
            row.response_body = body

    # -- recovery ------------------------------------------------------------------------------

    async def recover_once(self) -> int:
        """Drives every unfinished order whose lease lapsed; returns how many it took over."""
        async with self.db.transaction() as session:
            candidates = await repository.stale_unfinished(session)
        taken = 0
        for order_id in candidates:
            async with self.db.transaction() as session:
                claimed = await repository.claim_lease(session, order_id, self.settings.stale_after_seconds)
            if not claimed:
                continue
            taken += 1
            try:
                await self.drive(order_id)
                log.info("recovery.driven", order_id=order_id)
            except (grpc.aio.AioRpcError, Unavailable) as exc:
                log.warning("recovery.retry_later", order_id=order_id, error=str(exc))
            except Exception:
                log.exception("recovery.drive_failed", order_id=order_id)
            await self.rt.outbox.run_order(order_id)
        return taken

    async def recovery_loop(self) -> None:
        while True:
            try:
                await self.recover_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery.failed")
            await asyncio.sleep(self.settings.recovery_interval_seconds)

    async def purge_once(self) -> int:
        """Deletes idempotency keys older than `idempotency_ttl_seconds`."""
        cutoff = utcnow() - timedelta(seconds=self.settings.idempotency_ttl_seconds)
        async with self.db.transaction() as session:
            purged = await repository.purge_idempotency(session, cutoff)
        if purged:
            log.info("idempotency.purged", count=purged)
        return purged

    async def purge_loop(self) -> None:
        while True:
            try:
                await self.purge_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("idempotency.purge_failed")
            await asyncio.sleep(self.settings.purge_interval_seconds)


def request_fingerprint(request: orders_pb2.CreateOrderRequest) -> str:
    body = MessageToDict(request, preserving_proto_field_name=True)
    body.pop("request_id", None)
    body.pop("request_fingerprint", None)
    return domain.fingerprint(body)


def key_reused() -> ShopError:
    return Conflict(
        "This Idempotency-Key was used with a different request.", code="IDEMPOTENCY_KEY_REUSED"
    )


def in_progress() -> ShopError:
    return Aborted("A request with this Idempotency-Key is still running; retry shortly.", code="REQUEST_IN_PROGRESS")


__all__ = ["Checkout", "InvalidArgument", "key_reused", "in_progress"]
