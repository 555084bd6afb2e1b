"""Queries of the payments service, nothing else (no commits, no rules): functions taking the
use case's ORM session (refunds, webhooks), and the lean `Query` statements of the checkout's hot
path (CreateCharge, ListPayments) at the end of this module, run in `db.write()` or `db.read_*`."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.models import Payment, Refund, WebhookEvent
from shop.lib.db import Query, UTCDateTime, affected_rows, new_id, utcnow

# -- payments --------------------------------------------------------------------------------------


async def payment_by_order(session: AsyncSession, order_id: str, *, for_update: bool = False) -> Payment | None:
    query = select(Payment).where(Payment.order_id == order_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one_or_none()


async def payment_by_reference(
    session: AsyncSession, provider: str, reference: str, *, for_update: bool = False
) -> Payment | None:
    if not reference:
        return None
    query = select(Payment).where(Payment.provider == provider, Payment.provider_reference == reference)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query.execution_options(populate_existing=True))).scalars().first()


async def update_payment(session: AsyncSession, payment_id: str, **values: Any) -> None:
    await session.execute(update(Payment).where(Payment.id == payment_id).values(updated_at=utcnow(), **values))


async def reserve_refund(session: AsyncSession, payment_id: str, amount_cents: int) -> bool:
    """Conditional update: refunded (which counts pending refunds) never exceeds captured, even
    without the row lock."""
    result = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.captured_cents - Payment.refunded_cents >= amount_cents,
        )
        .values(refunded_cents=Payment.refunded_cents + amount_cents, updated_at=utcnow())
    )
    return affected_rows(result) == 1


async def release_refund(session: AsyncSession, payment_id: str, amount_cents: int) -> None:
    """Gives back a reservation the provider refused (never below zero)."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.refunded_cents >= amount_cents)
        .values(refunded_cents=Payment.refunded_cents - amount_cents, updated_at=utcnow())
    )


# -- refunds ---------------------------------------------------------------------------------------


async def refund_by_request_id(session: AsyncSession, request_id: str) -> Refund | None:
    query = select(Refund).where(Refund.request_id == request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def add_refund(session: AsyncSession, **values: Any) -> Refund:
    refund = Refund(id=new_id(), created_at=utcnow(), **values)
    session.add(refund)
    await session.flush()
    return refund


async def finish_refund(session: AsyncSession, refund_id: str, **values: Any) -> bool:
    """Moves a PENDING refund to its outcome; False when it is not PENDING any more."""
    result = await session.execute(
        update(Refund).where(Refund.id == refund_id, Refund.status == "PENDING").values(**values)
    )
    return affected_rows(result) == 1


async def pending_refunds_cents(session: AsyncSession, payment_id: str) -> int:
    query = select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
        Refund.payment_id == payment_id, Refund.status == "PENDING"
    )
    return int((await session.execute(query)).scalar_one())


# -- webhook events --------------------------------------------------------------------------------


# Declarative classes type __table__ as a FromClause; a class with a __tablename__ has a Table.
_WEBHOOK_EVENTS = cast(Table, WebhookEvent.__table__)


async def insert_event_if_new(session: AsyncSession, **values: Any) -> bool:
    """Records a provider event once (unique provider + event_id); False when already seen."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(_WEBHOOK_EVENTS)
        .values(id=new_id(), received_at=utcnow(), **values)
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(_WEBHOOK_EVENTS.c.id)
    )
    return (await session.execute(statement)).first() is not None


async def set_event_outcome(
    session: AsyncSession, provider: str, event_id: str, outcome: str, payment_id: str | None
) -> None:
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.provider == provider, WebhookEvent.event_id == event_id)
        .values(outcome=outcome, payment_id=payment_id)
    )


# -- CreateCharge / ListPayments on the lean path (shop.lib.db.Query: no ORM on the hot path) -----

_TS = UTCDateTime()
_PAYMENT_COLUMNS = list(Payment.__table__.c)
_REFUND_COLUMNS = list(Refund.__table__.c)
_PAYMENT_NAMES = ", ".join(f'"{c.name}"' for c in _PAYMENT_COLUMNS)
_REFUND_NAMES = ", ".join(f'"{c.name}"' for c in _REFUND_COLUMNS)

# The order's payment row, inserted PENDING unless one exists (unique order_id): the new row, or
# nothing when it conflicted. On PostgreSQL a concurrent insert for the same order waits for the
# first transaction, then does nothing. (declined_answered takes its server default, false.)
INSERT_PAYMENT = Query(
    "INSERT INTO payments (id, order_id, user_id, status, method, brand, last4, amount_cents, captured_cents, "  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    "refunded_cents, currency_code, provider, provider_reference, decline_code, created_at, updated_at) "
    "VALUES (:id, :order_id, :user_id, 'PENDING', :method, '', '', :amount_cents, 0, 0, :currency_code, "
    ":provider, '', '', :now, :now) "
    f"ON CONFLICT (order_id) DO NOTHING RETURNING {_PAYMENT_NAMES}",
    _PAYMENT_COLUMNS,
    types={"now": _TS},
)
PAYMENT_OF_ORDER = Query(
    f"SELECT {_PAYMENT_NAMES} FROM payments WHERE order_id = :order_id",  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    _PAYMENT_COLUMNS,
)
# SQLite writers are serialised (BEGIN IMMEDIATE): no row lock there.
PAYMENT_OF_ORDER_FOR_UPDATE = Query(
    f"SELECT {_PAYMENT_NAMES} FROM payments WHERE order_id = :order_id",  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    _PAYMENT_COLUMNS,
    postgres_sql=f"SELECT {_PAYMENT_NAMES} FROM payments WHERE order_id = :order_id FOR UPDATE",  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
)
# The provider's answer as the domain applied it (the caller holds the row lock).
RECORD_CHARGE = Query(
    "UPDATE payments SET status = :status, captured_cents = :captured_cents, decline_code = :decline_code, "  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    "brand = :brand, last4 = :last4, provider_reference = :provider_reference, updated_at = :now "
    f"WHERE id = :payment_id RETURNING {_PAYMENT_NAMES}",
    _PAYMENT_COLUMNS,
    types={"now": _TS},
)
# The same, without the lock, only if the row is still as the caller read it (every column the rule
# and the answer read): the caller's one statement on its common path; no row when it changed.
RECORD_CHARGE_IF_UNCHANGED = Query(
    "UPDATE payments SET status = :status, captured_cents = :captured_cents, decline_code = :decline_code, "  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    "brand = :brand, last4 = :last4, provider_reference = :provider_reference, updated_at = :now "
    "WHERE id = :payment_id AND status = :seen_status AND captured_cents = :seen_captured_cents "
    "AND refunded_cents = :seen_refunded_cents AND decline_code = :seen_decline_code AND brand = :seen_brand "
    f"AND last4 = :seen_last4 AND provider_reference = :seen_provider_reference RETURNING {_PAYMENT_NAMES}",
    _PAYMENT_COLUMNS,
    types={"now": _TS},
)
MARK_DECLINED_ANSWERED = Query(
    "UPDATE payments SET declined_answered = :answered, updated_at = :now WHERE id = :payment_id", types={"now": _TS}
)
# A payment the provider refused to charge (still PENDING, no provider reference).
DELETE_UNSENT_PAYMENT = Query(
    "DELETE FROM payments WHERE id = :payment_id AND status = 'PENDING' AND provider_reference = ''"
)
REFUNDS_OF_ORDER = Query(
    f"SELECT {_REFUND_NAMES} FROM refunds WHERE order_id = :order_id ORDER BY created_at, id",  # noqa: S608  # nosec B608  # SQL from the models' column names, no input
    _REFUND_COLUMNS,
)


def new_payment_values(
    *, order_id: str, user_id: str, method: str, amount_cents: int, currency_code: str, provider: str
) -> dict[str, Any]:
    """The parameters of INSERT_PAYMENT for a new PENDING charge."""
    return {
        "id": new_id(),
        "order_id": order_id,
        "user_id": user_id,
        "method": method,
        "amount_cents": amount_cents,
        "currency_code": currency_code,
        "provider": provider,
        "now": utcnow(),
    }
