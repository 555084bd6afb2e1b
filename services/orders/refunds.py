"""Use cases of an order's money after checkout: ListOrderPayments and CreateRefund (an admin).

CreateRefund is idempotent by (admin, request id) with the request message's fingerprint
(shop.lib.idempotency's key rule, fingerprint and replay check), across a remote call, so it is
three short steps rather than one transaction: claim the key (its own transaction: a new row, or
a lapsed claim taken over), ask payments to refund (request id derived from the key's row, so
a retry never refunds twice), then record what payments answered on the order (one ORM
transaction: refunded cents, payment status, REFUNDED with the stock returned when it is full)
and store the answer under the key. A refusal frees the key, so a corrected retry may reuse it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
from sqlalchemy.exc import IntegrityError

from services.orders import domain, repository
from services.orders.domain import OutboxKind
from services.orders.lifecycle import Lifecycle, not_found
from services.orders.mapping import PAYMENT_STATUSES, error_from_stored, order_proto, refund_record
from services.orders.repository import OrderView
from shop.lib.context import Caller
from shop.lib.db import utcnow
from shop.lib.errors import ShopError, decode_rpc_error
from shop.lib.idempotency import check_replay, clean_key, in_progress, key_reused, message_fingerprint
from shop.orders.v1 import orders_pb2
from shop.payments.v1 import payments_pb2

if TYPE_CHECKING:
    from services.orders.outbox import OutboxRelay
    from shop.lib.clients import ServiceClients
    from shop.lib.db import Database

REFUND_OPERATION = "refund"
# Answers that refused the refund and changed nothing: the key is freed for a corrected retry.
REFUSALS = (
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
)


class Refunds:
    def __init__(
        self,
        *,
        settings,
        db: Database,
        clients: ServiceClients,
        outbox: OutboxRelay,
        lifecycle: Lifecycle,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clients = clients
        self.outbox = outbox
        self.lifecycle = lifecycle

    async def payments(self, caller: Caller, order_id: str) -> payments_pb2.ListPaymentsResponse:
        """The order's payments and refunds, as payments records them (owner or admin)."""
        await self.lifecycle.get(caller, order_id)
        return await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))

    async def refund(
        self, caller: Caller, request: orders_pb2.CreateRefundRequest
    ) -> tuple[orders_pb2.CreateRefundResponse, bool]:
        """The refund's answer and whether it is a replay of the key's stored one."""
        key = clean_key(request.request_id, required=True)
        reason = domain.validate_refund(request.amount_cents, request.reason)
        fp = message_fingerprint(request)
        user_id = caller.user_id or ""
        if await repository.order_row(self.db, request.order_id) is None:
            raise not_found()
        row = await repository.key_row(self.db, user_id, key)
        if row is not None:
            check_replay(row.fingerprint, fp, stored_operation=row.operation, operation=REFUND_OPERATION)
            if row.order_id != request.order_id:
                raise key_reused()
            if row.state == "completed":
                return _stored(row), True
            async with self.db.transaction() as session:
                if not await repository.claim_key(session, row.id, self.settings.stale_after_seconds):
                    raise in_progress()
            key_id = row.id
        else:
            key_id = await self._new_key(user_id, key, request.order_id, fp)
        try:
            response = await self._refund(request.order_id, request.amount_cents, reason, f"refund-{key_id}")
        except ShopError as error:
            if error.grpc_code in REFUSALS:
                async with self.db.transaction() as session:
                    await repository.delete_key(session, key_id)
            raise
        async with self.db.transaction() as session:
            await repository.store_key_answer(session, key_id, response.SerializeToString())
        return response, False

    async def _new_key(self, user_id: str, key: str, order_id: str, fp: str) -> str:
        """The key's row, in progress and held by this request; REQUEST_IN_PROGRESS when a
        concurrent request with the same key recorded it first."""
        try:
            async with self.db.transaction() as session:
                row = repository.insert_key(
                    session,
                    user_id=user_id,
                    key=key,
                    operation=REFUND_OPERATION,
                    fingerprint=fp,
                    state="in_progress",
                    order_id=order_id,
                    locked_until=utcnow() + timedelta(seconds=self.settings.stale_after_seconds),
                )
        except IntegrityError:
            raise in_progress() from None
        return row.id

    async def _refund(
        self, order_id: str, amount_cents: int, reason: str, request_id: str
    ) -> orders_pb2.CreateRefundResponse:
        """Checks what remains refundable, asks payments, records its answer on the order."""
        listing = await self.clients.payments.ListPayments(payments_pb2.ListPaymentsRequest(order_id=order_id))
        order = await repository.order_row(self.db, order_id)
        assert order is not None
        captured = sum(p.captured_cents for p in listing.payments)
        refunded = sum(p.refunded_cents for p in listing.payments)
        # (A payments service of the previous version answers refunds without request ids.)
        already = "request_id" in payments_pb2.Refund.DESCRIPTOR.fields_by_name and any(
            r.request_id == request_id for r in listing.refunds
        )
        if not already:
            domain.check_refundable(order.status, captured - refunded, amount_cents)
        try:
            result = await self.clients.payments.CreateRefund(
                payments_pb2.CreateRefundRequest(
                    order_id=order_id, amount_cents=amount_cents, reason=reason or "Refund", request_id=request_id
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise decode_rpc_error(exc).to_shop_error() from None
        view = await self._record(order_id, result.payment)
        await self.outbox.run_order(order_id)
        return orders_pb2.CreateRefundResponse(refund=refund_record(result.refund), order=order_proto(view))

    async def _record(self, order_id: str, payment: payments_pb2.Payment) -> OrderView:
        """One transaction: the refunded amount and payment status; REFUNDED (and the stock
        returned, if it has not shipped) when everything captured is refunded."""
        async with self.db.transaction() as session:
            order = await repository.get_order(session, order_id, for_update=True)
            assert order is not None
            order.refunded_cents = max(order.refunded_cents, payment.refunded_cents)
            order.payment_status = PAYMENT_STATUSES.name(payment.status)
            order.updated_at = utcnow()
            full = payment.captured_cents > 0 and payment.refunded_cents >= payment.captured_cents
            if full and order.status in domain.REFUNDABLE:
                shipped = order.status not in domain.NOT_SHIPPED
                await repository.set_status(
                    session, order, domain.REFUNDED, "Refunded in full." + ("" if shipped else " Restocked.")
                )
                if not shipped:
                    await repository.add_outbox(session, order.id, OutboxKind.RETURN_STOCK, {})
            return await repository.load_view(session, order)


def _stored(row: Any) -> orders_pb2.CreateRefundResponse:
    """The answer stored under a completed key (its error raised again)."""
    if row.error is not None:
        raise error_from_stored(row.error)
    return orders_pb2.CreateRefundResponse.FromString(bytes(row.response_body or b""))
