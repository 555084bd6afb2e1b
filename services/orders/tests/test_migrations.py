"""The orders migrations on PostgreSQL (a fresh database) and SQLite: they reach head, go down and
up again, and leave the tables `models.py` describes, but for the one column whose drop is pending
(README "Pending contract migrations"). That column is written by the previous release's replicas
and must not be needed by this release's."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from services.orders import repository
from services.orders.models import IdempotencyKey, OrdersBase
from services.orders.server import MIGRATIONS_DIR
from shop.lib.db import sync_url, utcnow
from shop.lib.migrations import alembic_config

# (table, column) of the expand/contract removals still waiting for their contract step.
PENDING_DROPS = {("idempotency_keys", "response_status")}


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/orders.db"
    return request.getfixturevalue("databases").create("ordersmigrations")


def model_differences(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), OrdersBase.metadata)


def test_migrations_go_up_down_and_up_again_and_match_the_models(database_url):
    config = alembic_config(MIGRATIONS_DIR, database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "b0aea279eca0")
    command.upgrade(config, "head")
    engine = create_engine(sync_url(database_url))
    try:
        differences = model_differences(engine)
        pending = {(diff[2], diff[3].name) for diff in differences if diff[0] == "remove_column"}
        assert pending == PENDING_DROPS
        assert [diff for diff in differences if diff[0] != "remove_column"] == []
        column = next(c for c in inspect(engine).get_columns("idempotency_keys") if c["name"] == "response_status")
        assert column["nullable"] is True and "0" in str(column["default"])
    finally:
        engine.dispose()


def key_row(**values) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "user_id": "u1",
        "key": str(uuid.uuid4()),
        "operation": "create_order",
        "fingerprint": "f" * 64,
        "state": "in_progress",
        "order_id": "",
        "created_at": utcnow(),
        **values,
    }


def test_old_and_new_replicas_write_keys_side_by_side(database_url):
    """During the rolling update: this release's code inserts keys without `response_status` (the
    checkout's lean INSERT, the refunds' ORM row), the previous release's with it; all work, and
    the old code reads 0, never NULL."""
    command.upgrade(alembic_config(MIGRATIONS_DIR, database_url), "head")
    engine = create_engine(sync_url(database_url))
    try:
        checkout = key_row()
        refund = key_row(operation="refund")
        old = key_row(response_status=201)
        with Session(engine) as session, session.begin():
            session.add(IdempotencyKey(**refund))
        with engine.begin() as connection:
            connection.execute(
                repository.INSERT_KEY.core,
                {name: checkout[name] for name in ("user_id", "key", "operation", "fingerprint", "order_id")}
                | {"key_row_id": checkout["id"], "lease": utcnow(), "now": utcnow()},
            )
            connection.execute(
                text(
                    'INSERT INTO idempotency_keys (id, user_id, "key", operation, fingerprint, state, order_id, '
                    "response_status, created_at) VALUES (:id, :user_id, :key, :operation, :fingerprint, :state, "
                    ":order_id, :response_status, :created_at)"
                ),
                old,
            )
            statuses: dict[str, int] = dict(
                connection.execute(text("SELECT id, response_status FROM idempotency_keys")).all()
            )
        assert statuses == {checkout["id"]: 0, refund["id"]: 0, old["id"]: 201}
    finally:
        engine.dispose()
