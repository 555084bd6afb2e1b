"""The repository's multi-statement writes, on both dialects: PostgreSQL runs each as one
statement (a data-modifying WITH, in autocommit), SQLite as statements in one transaction. Both
must write the same rows, and nothing when the order was moved by someone else."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from services.orders import domain, repository
from services.orders.domain import OutboxKind, Stage
from services.orders.models import OrdersBase
from shop.lib.db import Database, new_id, utcnow


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(request, databases, tmp_path):
    url = databases.create("orders_repo") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'orders.db'}"
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.run_sync(OrdersBase.metadata.create_all)
    yield database
    await database.dispose()


async def pending_order(db: Database) -> str:
    return (await record_pending(db)).id


async def record_pending(db: Database):
    order_id, now = new_id(), utcnow()
    return await repository.record_pending(
        db,
        key_row_id=new_id(),
        order_id=order_id,
        number=f"N-{uuid.uuid4().hex[:12]}",
        user_id=new_id(),
        key=str(uuid.uuid4()),
        operation="create_order",
        fingerprint="f",
        email="ada@example.com",
        status=domain.PENDING,
        stage=str(Stage.NEW),
        address=json.dumps({}),
        method="card",
        token="tok_visa",
        note="Checkout started.",
        lease=now + timedelta(seconds=30),
        now=now,
    )


async def rows(db: Database, sql: str, **params) -> list[tuple]:
    async with db.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(text(sql), params)).all()]


def line(product: str, unit_price_cents: int, quantity: int) -> SimpleNamespace:
    return SimpleNamespace(
        product_id=product, sku=f"SKU-{product}", name=product, unit_price_cents=unit_price_cents, quantity=quantity
    )


async def test_a_reservation_moves_the_order_with_its_totals_and_lines_or_writes_nothing(db):
    order_id = await pending_order(db)
    totals = domain.compute_totals([(1500, 2), (700, 1)])
    now = utcnow()
    lines = [line("lamp", 1500, 2), line("bulb", 700, 1)]

    # Someone else moved it first (the driver saw PRICED): nothing is written.
    moved = await repository.record_reservation(
        db, order_id, Stage.PRICED, lease=now, now=now, totals=totals, currency="EUR", lines=lines
    )
    assert moved is False
    assert await rows(db, "SELECT count(*) FROM order_items WHERE order_id = :id", id=order_id) == [(0,)]
    assert await rows(db, "SELECT stage, total_cents FROM orders WHERE id = :id", id=order_id) == [("new", 0)]

    moved = await repository.record_reservation(
        db, order_id, Stage.NEW, lease=now, now=now, totals=totals, currency="EUR", lines=lines
    )
    assert moved is True
    assert await rows(
        db,
        "SELECT position, product_id, sku, unit_price_cents, quantity, line_total_cents FROM order_items "
        "WHERE order_id = :id ORDER BY position",
        id=order_id,
    ) == [(0, "lamp", "SKU-lamp", 1500, 2, 3000), (1, "bulb", "SKU-bulb", 700, 1, 700)]
    assert await rows(
        db,
        "SELECT stage, subtotal_cents, total_cents, currency, reservation_state FROM orders WHERE id = :id",
        id=order_id,
    ) == [("reserved", 3700, totals.total_cents, "EUR", "reserved")]


async def test_an_order_priced_before_is_reserved_with_the_lines_it_has(db):
    order_id = await pending_order(db)
    now = utcnow()
    totals = domain.compute_totals([(1500, 1)])
    await repository.record_reservation(
        db, order_id, Stage.NEW, lease=now, now=now, totals=totals, currency="USD", lines=[line("lamp", 1500, 1)]
    )
    async with db.engine.begin() as connection:  # as the previous version left it: priced, not reserved
        await connection.execute(text("UPDATE orders SET stage = 'priced' WHERE id = :id"), {"id": order_id})

    assert await repository.record_reservation(
        db, order_id, Stage.PRICED, lease=now, now=now, totals=totals, currency="USD"
    )
    assert await rows(db, "SELECT product_id FROM order_items WHERE order_id = :id", id=order_id) == [("lamp",)]
    assert await rows(db, "SELECT stage FROM orders WHERE id = :id", id=order_id) == [("reserved",)]


async def test_one_relay_at_a_time_takes_an_orders_outbox_and_its_end_is_one_write(db):
    order_id = await pending_order(db)
    now = utcnow()
    async with db.write() as tx:
        await repository.append_outbox(tx, order_id, OutboxKind.COMMIT_RESERVATION, {}, now)
        await repository.append_outbox(tx, order_id, OutboxKind.EMAIL, {"template": "paid"}, now)
    until = now + timedelta(seconds=30)

    order, pending = await repository.claim_outbox(db, order_id, until=until, now=now)
    assert order.id == order_id
    assert [row.kind for row in pending] == [OutboxKind.COMMIT_RESERVATION, OutboxKind.EMAIL]
    # The claim answers the row as stored (lock included) and the pending rows as a read gives them.
    assert order == await repository.order_row(db, order_id)
    assert pending == await db.read_all(repository.PENDING_OUTBOX, order_id=order_id)
    assert [row.payload for row in pending] == [{}, {"template": "paid"}]
    assert await repository.claim_outbox(db, order_id, until=until, now=now) == (None, [])  # held

    # A run where nothing was done gives the lock back and changes nothing else.
    await repository.release_outbox(db, order_id, until=until, done_ids=[], learned={})
    assert await rows(db, "SELECT count(*) FROM outbox WHERE state = 'pending'") == [(2,)]
    order, pending = await repository.claim_outbox(db, order_id, until=until, now=now)
    assert order is not None

    await repository.release_outbox(
        db, order_id, until=until, done_ids=[pending[0].id], learned={"reservation_state": "committed"}
    )
    assert await rows(db, "SELECT kind, state, attempts FROM outbox ORDER BY seq") == [
        (OutboxKind.COMMIT_RESERVATION, "done", 1),
        (OutboxKind.EMAIL, "pending", 0),
    ]
    assert await rows(db, "SELECT reservation_state, outbox_lock_until FROM orders WHERE id = :id", id=order_id) == [
        ("committed", None)
    ]
    # A release by a relay whose lock was taken over leaves the newer lock alone.
    later = until + timedelta(seconds=60)
    assert (await repository.claim_outbox(db, order_id, until=later, now=until + timedelta(seconds=1)))[0] is not None
    await repository.release_outbox(db, order_id, until=until, done_ids=[], learned={})
    assert await repository.claim_outbox(db, order_id, until=later, now=until + timedelta(seconds=2)) == (None, [])


async def test_an_outcome_moves_the_order_to_done_with_its_history_and_the_outbox_rows_it_owes(db):
    order_id = await pending_order(db)
    now = utcnow()
    outcome = {
        "failure_code": "",
        "payment_id": "pay-1",
        "payment_status": "SUCCEEDED",
        "brand": "visa",
        "last4": "4242",
        "captured": 5319,
    }
    effects = [(OutboxKind.COMMIT_RESERVATION, {}), (OutboxKind.EMAIL, {"template": "paid"})]
    async with db.write() as tx:  # the driver saw RESERVED, but the order is still NEW: nothing
        assert (
            await repository.record_outcome(
                tx, order_id, Stage.RESERVED, now=now, status=domain.PAID, note="Paid.", effects=effects, **outcome
            )
            is None
        )
    assert await rows(db, "SELECT count(*) FROM outbox") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM order_history") == [(1,)]

    lines = [line("lamp", 1500, 2), line("bulb", 700, 1), line("cord", 300, 3)]
    totals = domain.compute_totals([(each.unit_price_cents, each.quantity) for each in lines])
    assert await repository.record_reservation(
        db, order_id, Stage.NEW, lease=now, now=now, totals=totals, currency="EUR", lines=lines
    )
    async with db.write() as tx:
        await repository.append_outbox(tx, order_id, OutboxKind.RESTORE_CART, {}, now)  # an earlier row: seq 1
        finished = await repository.record_outcome(
            tx, order_id, Stage.RESERVED, now=now, status=domain.PAID, note="Paid.", effects=effects, **outcome
        )
    # The outcome answers the view the stored 201 is built from, exactly as a read gives it.
    assert finished is not None and finished == await repository.view(db, order_id)
    assert [(entry.seq, entry.status) for entry in finished.history] == [(1, domain.PENDING), (2, domain.PAID)]
    assert [(item.position, item.product_id, item.line_total_cents) for item in finished.items] == [
        (0, "lamp", 3000),
        (1, "bulb", 700),
        (2, "cord", 900),
    ]
    finished = finished.order
    assert (finished.status, finished.stage, finished.payment_id, finished.captured_cents, finished.version) == (
        domain.PAID,
        "done",
        "pay-1",
        5319,
        2,
    )
    assert (finished.lease_until, finished.payment_token) == (None, "")
    assert await rows(db, "SELECT seq, status, note FROM order_history ORDER BY seq") == [
        (1, domain.PENDING, "Checkout started."),
        (2, domain.PAID, "Paid."),
    ]
    owed = await rows(db, "SELECT seq, kind, payload, state FROM outbox ORDER BY seq")
    assert [(seq, kind, state) for seq, kind, _, state in owed] == [
        (1, OutboxKind.RESTORE_CART, "pending"),
        (2, OutboxKind.COMMIT_RESERVATION, "pending"),
        (3, OutboxKind.EMAIL, "pending"),
    ]
    payloads = [payload if isinstance(payload, dict) else json.loads(payload) for _, _, payload, _ in owed]
    assert payloads == [{}, {}, {"template": "paid"}]


async def test_record_pending_answers_the_order_row_as_stored(db):
    """The saga starts from the row record_pending answers instead of reading it: it must be the
    row as stored, every column."""
    written = await record_pending(db)
    stored = await repository.order_row(db, written.id)
    assert written == stored
    assert (written.stage, written.status, written.customer_email) == (
        str(Stage.NEW),
        domain.PENDING,
        "ada@example.com",
    )


async def test_a_claim_of_an_order_with_no_pending_row_answers_the_order_alone(db):
    order_id = await pending_order(db)
    now = utcnow()
    order, pending = await repository.claim_outbox(db, order_id, until=now + timedelta(seconds=30), now=now)
    assert order.id == order_id and pending == []
    assert await repository.claim_outbox(db, new_id(), until=now, now=now) == (None, [])
