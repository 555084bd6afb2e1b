"""Use case of CreateOrder: the request side of the checkout saga (`saga.py` moves an order
through its stages).

Before anything is recorded, the request is checked (shipping address, payment method and token
against the provider's rule kept by `PaymentRules`, the customer's email; the remote checks
together). Then `repository.record_pending` records, atomically, the idempotency key
(`in_progress`, fingerprint), the order PENDING at stage NEW, its first history entry and the
driver's lease, and answers the order row the saga starts from. The request drives the saga in its
own task (a cancelled RPC does not stop it halfway) and answers what the saga stored under the key;
a replay of the key (found when its insert collides, or when the checks fail) answers that stored
answer, or takes over a checkout whose lease lapsed. The recovery loop drives every unfinished
order whose lease lapsed; the purge loop forgets old keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
import structlog

from services.orders import domain, repository
from services.orders.domain import Stage
from services.orders.mapping import error_from_stored
from services.orders.outbox import OutboxRelay
from services.orders.payment_rules import PaymentRules
from services.orders.saga import Done, Saga, Step, retry_later
from shop.auth.v1 import auth_pb2
from shop.lib.clients import ServiceClients
from shop.lib.context import Caller
from shop.lib.db import DUPLICATE_KEY, Database, new_id, utcnow
from shop.lib.errors import Aborted, NotFound, ShopError, Unavailable, ValidationError, decode_rpc_error
from shop.lib.idempotency import check_replay, clean_key, in_progress, message_fingerprint
from shop.lib.logging import safe_error_text
from shop.lib.periodic import Periodic
from shop.lib.server import crash_point
from shop.orders.v1 import orders_pb2

log = structlog.get_logger("orders.checkout")
_T = TypeVar("_T")

OPERATION = "create_order"


class Checkout:
    def __init__(
        self,
        *,
        settings,
        db: Database,
        clients: ServiceClients,
        outbox: OutboxRelay,
        hold: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clients = clients
        self.outbox = outbox
        self.hold = hold
        self._tasks: set[asyncio.Future] = set()
        self.payment_rules = PaymentRules(clients)
        self.saga = Saga(settings=settings, db=db, clients=clients, hold=hold)
        # The saga as data: the one step that moves an order on from each unfinished stage.
        self.handlers: dict[Stage, Callable[[Any], Awaitable[Step]]] = self.saga.handlers

    # -- the RPC -------------------------------------------------------------------------------

    async def create_order(
        self, caller: Caller, request: orders_pb2.CreateOrderRequest, bearer: str | None
    ) -> tuple[bytes, bool]:
        """Returns the serialized CreateOrderResponse and whether it is a replay; raises the
        outcome's error (stored too) otherwise."""
        user_id = caller.user_id or ""
        key = clean_key(request.request_id, required=True)
        # The service's own fingerprint of what is asked (the deprecated request_fingerprint field
        # is ignored): one key gets one fingerprint whoever calls.
        fingerprint = message_fingerprint(request)
        # The key is not looked up first: a new checkout (the common case) finds it by inserting
        # it. A replay is known when the insert collides, or when the inputs fail (a replay
        # answers what was stored even if its address or auth fails now).
        try:
            address, email = await self.inputs(caller, request, bearer)
        except (ShopError, grpc.aio.AioRpcError):
            existing = await repository.key_row(self.db, user_id, key)
            if existing is not None:
                return await self.replay(existing, fingerprint)
            raise
        order_id = new_id()
        for _attempt in range(5):
            try:
                order = await self.record_pending(order_id, user_id, key, fingerprint, address, request, email)
                break
            except DUPLICATE_KEY:
                existing = await repository.key_row(self.db, user_id, key)
                if existing is not None:  # a replay, or a concurrent request with the same key won
                    return await self.replay(existing, fingerprint)
                # else: the order number collided; draw another
        else:  # pragma: no cover - 5 collisions in a row among 31^6 numbers a day
            raise Aborted("Could not allocate an order number; retry.", code="ABORTED")
        crash_point(self.settings, "after_pending_recorded")
        if self.hold is not None and await self.hold("after_pending_recorded", user_id):
            order = None  # a test held the checkout here and may have changed the row: read it again
        done = await self.drive_or_let_go(order_id, order)
        if done.body is not None:  # this request's drive stored the 201: no need to read it back
            self.outbox.soon(order_id)
            return done.body, False
        return await self.outcome(user_id, key, replayed=False)

    async def replay(self, row: Any, fingerprint: str) -> tuple[bytes, bool]:
        check_replay(row.fingerprint, fingerprint, stored_operation=row.operation, operation=OPERATION)
        if row.state != "completed":
            # The first request is still running, or died: take over only when its lease lapsed.
            async with self.db.transaction() as session:
                claimed = await repository.claim_lease(session, row.order_id, self.settings.stale_after_seconds)
            if not claimed:
                raise in_progress()
            await self.drive_or_let_go(row.order_id)
        return await self.outcome(row.user_id, row.key, replayed=True)

    async def outcome(self, user_id: str, key: str, *, replayed: bool) -> tuple[bytes, bool]:
        """The stored answer. A failure's side effects (the cart restored, the stock released) run
        before it is answered; a success's after it (the buyer need not wait for them)."""
        row = await repository.key_row(self.db, user_id, key)
        if row is None or row.state != "completed":
            raise in_progress()
        if row.error is not None:
            if row.order_id:
                await self.outbox.run_order(row.order_id)
            error = error_from_stored(row.error)
            error.replayed = replayed  # type: ignore[attr-defined]
            raise error
        if row.order_id:
            self.outbox.soon(row.order_id)
        assert row.response_body is not None
        return bytes(row.response_body), replayed

    # -- inputs, checked before anything is recorded -------------------------------------------

    async def inputs(
        self, caller: Caller, request: orders_pb2.CreateOrderRequest, bearer: str | None
    ) -> tuple[dict[str, str], str]:
        """The shipping address and the customer's email; the payment method checked. A bad token
        is refused here, with no order, no reservation and the key still unused. The remote
        checks run together; their errors are raised in a fixed order (address, then payment)."""
        which = request.WhichOneof("destination")
        inline: dict[str, str] | None = None
        if which == "shipping_address":
            raw = {name: getattr(request.shipping_address, name) for name in domain.ADDRESS_FIELDS}
            inline = domain.validate_address(raw)
        elif not (which == "address_id" and request.address_id):
            raise ValidationError.single("shippingAddress", "shippingAddress or addressId is required")
        domain.validate_payment(request.payment_method, request.payment_token)
        outcomes = await asyncio.gather(
            self.saved_address(caller.user_id or "", request.address_id) if inline is None else _value(inline),
            self.payment_rules.check(request.payment_method, request.payment_token),
            self.customer_email(caller, bearer),
            return_exceptions=True,
        )
        address, payment_check, email = outcomes
        # The first failure in this order (address, payment method, email) is the answer.
        if isinstance(address, BaseException):
            raise address
        if isinstance(payment_check, BaseException):
            raise payment_check
        if isinstance(email, BaseException):
            raise email
        return address, email

    async def saved_address(self, user_id: str, address_id: str) -> dict[str, str]:
        try:
            response = await self.clients.auth.GetAddress(
                auth_pb2.GetAddressRequest(user_id=user_id, address_id=address_id)
            )
        except grpc.aio.AioRpcError as exc:
            remote = decode_rpc_error(exc)
            if remote.grpc_code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound("Address not found.", code="ADDRESS_NOT_FOUND") from None
            raise
        raw = {name: getattr(response.address, name) for name in domain.ADDRESS_FIELDS}
        return domain.validate_address(raw, prefix="address", saved=True)

    async def customer_email(self, caller: Caller, bearer: str | None) -> str:
        """The customer's email (for the order emails), snapshotted into the order: from the access
        token's claim (auth puts it there), else asked of auth (a token minted before it did)."""
        if caller.claims.get("email"):
            return str(caller.claims["email"])
        if not bearer:
            return ""
        try:
            response = await self.clients.auth.GetCurrentUser(
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
    ) -> Any:
        """The order PENDING (stage NEW) with its idempotency key and first history entry,
        atomically; the order row as written."""
        now = utcnow()
        return await repository.record_pending(
            self.db,
            key_row_id=new_id(),
            order_id=order_id,
            number=domain.order_number(now),
            user_id=user_id,
            key=key,
            operation=OPERATION,
            fingerprint=fingerprint,
            email=email,
            status=domain.PENDING,
            stage=str(Stage.NEW),
            address=json.dumps(address),
            method=request.payment_method,
            token=request.payment_token,
            note="Checkout started.",
            lease=now + timedelta(seconds=self.settings.stale_after_seconds),
            now=now,
        )

    # -- the saga ------------------------------------------------------------------------------

    async def drive_or_let_go(self, order_id: str, order: Any = None) -> Done:
        """Drives an order for a request; on a transient failure gives the lease up at once, so the
        client's retry (same key) or the recovery loop continues without waiting for it to lapse.
        The saga runs in its own task: a cancelled RPC (client gone, deadline, connection recycled)
        does not stop it halfway; the client's replay finds the outcome."""
        task = asyncio.ensure_future(self._drive_releasing(order_id, order))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        try:
            return await asyncio.shield(task)
        except grpc.aio.AioRpcError as exc:
            if not retry_later(decode_rpc_error(exc)):
                raise
            # A service the saga needs did not answer (a timeout, a restart): the order keeps its
            # stage and the client's retry with the same key continues it. A 503, never a 500.
            raise Unavailable(
                "The checkout could not finish yet; retry with the same Idempotency-Key.",
                code="SERVICE_UNAVAILABLE",
                retry_after=1,
            ) from None

    def _forget(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.info("checkout.drive_ended", error=safe_error_text(error))

    async def _drive_releasing(self, order_id: str, order: Any = None) -> Done:
        try:
            return await self.saga.drive(order_id, order)
        except (grpc.aio.AioRpcError, Unavailable):
            async with self.db.transaction() as session:
                await repository.release_lease(session, order_id)
            raise

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
                await self.saga.drive(order_id)
                log.info("recovery.driven", order_id=order_id)
            except (grpc.aio.AioRpcError, Unavailable) as exc:
                log.warning("recovery.retry_later", order_id=order_id, error=str(exc))
            except Exception:
                log.exception("recovery.drive_failed", order_id=order_id)
            await self.outbox.run_order(order_id)
        return taken

    async def recovery_loop(self) -> None:
        await Periodic("recovery", self.recover_once, lambda: self.settings.recovery_interval_seconds)()

    async def purge_once(self) -> int:
        """Deletes idempotency keys older than `idempotency_ttl_seconds`."""
        cutoff = utcnow() - timedelta(seconds=self.settings.idempotency_ttl_seconds)
        async with self.db.transaction() as session:
            purged = await repository.purge_idempotency(session, cutoff)
        if purged:
            log.info("idempotency.purged", count=purged)
        return purged

    async def purge_loop(self) -> None:
        await Periodic("idempotency.purge", self.purge_once, lambda: self.settings.purge_interval_seconds)()


async def _value(value: _T) -> _T:
    return value
