"""Production refuses what would leak secrets into logs: the console mail backend (it prints
password-reset and verification links) and database errors carrying their bound values (in the
log processor, in `safe_error_text` for the reasons orders logs and stores, in every engine)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.auth.config import AuthSettings
from services.orders.config import OrdersSettings
from shop.lib.db import Database, sync_url
from shop.lib.logging import safe_error_text, scrub_database_errors
from shop.lib.migrations import migration_engine
from tests.harness import identity_settings

STRONG = {**identity_settings("orders"), "page_token_secret": "p" * 40, "jwt_private_key": "pem"}


@pytest.mark.parametrize("settings_class", [AuthSettings, OrdersSettings])
def test_production_refuses_the_console_mail_backend(settings_class):
    with pytest.raises(ValidationError, match="SHOP_MAIL_BACKEND=console"):
        settings_class(env="production", mail_backend="console", **STRONG)
    assert settings_class(env="production", mail_backend="smtp", **STRONG).mail_backend == "smtp"
    assert settings_class(env="development", mail_backend="console").mail_backend == "console"


async def test_a_failed_statement_does_not_carry_its_bound_values(databases):
    db = Database(databases.create("guards"))
    secret = f"reset-token-{uuid.uuid4().hex}"
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (v text PRIMARY KEY)"))
        with pytest.raises(IntegrityError) as failure:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (:v), (:v)"), {"v": secret})
        assert "[SQL parameters hidden due to hide_parameters=True]" in str(failure.value)
        # PostgreSQL's own DETAIL still names the value; the log line keeps everything else.
        logged = scrub_database_errors(None, "error", {"event": "rpc.unhandled_error", "exc_info": failure.value})
        assert "exc_info" not in logged
        assert "SQLSTATE 23505: duplicate key value violates unique constraint" in logged["exception"]
        assert "INSERT INTO t" in logged["exception"] and "Traceback" in logged["exception"]
        assert secret not in logged["exception"]
    finally:
        await db.dispose()


async def test_safe_error_text_never_carries_the_value_nor_the_detail(databases):
    """What orders logs and stores as a failure's reason (outbox.failed / last_error,
    checkout.drive_ended): a unique violation through SQLAlchemy, through psycopg alone (the lean
    path) and an error raised from one give the SQLSTATE and primary message only."""
    url = databases.create("guards")
    db = Database(url)
    secret = f"ann-{uuid.uuid4().hex}@example.com"
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (v text PRIMARY KEY)"))
        with pytest.raises(IntegrityError) as through_sqlalchemy:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (:v), (:v)"), {"v": secret})
    finally:
        await db.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation) as through_psycopg:
            conn.execute("INSERT INTO t VALUES (%s), (%s)", (secret, secret))
    assert secret in str(through_psycopg.value) and "DETAIL" in str(through_psycopg.value)  # what it guards against
    try:
        raise RuntimeError("the saga stopped") from through_psycopg.value
    except RuntimeError as exc:
        wrapped = exc
    texts = [safe_error_text(error) for error in (through_sqlalchemy.value, through_psycopg.value, wrapped)]
    for said in texts:
        assert secret not in said and "DETAIL" not in said and "Key (" not in said, said
        assert 'SQLSTATE 23505: duplicate key value violates unique constraint "t_pkey"' in said, said
    assert texts[0].startswith("IntegrityError: ") and texts[2].startswith("RuntimeError: ")
    assert safe_error_text(TimeoutError("no answer")) == "TimeoutError: no answer"  # anything else unchanged


def test_the_migrations_engine_hides_bound_values(databases):
    engine = migration_engine(sync_url(databases.create("guards")))
    secret = f"reset-token-{uuid.uuid4().hex}"
    try:
        with engine.connect() as connection:
            connection.execute(text("CREATE TABLE t (v text PRIMARY KEY)"))
            connection.commit()
            with pytest.raises(IntegrityError) as failure:
                connection.execute(text("INSERT INTO t VALUES (:v), (:v)"), {"v": secret})
    finally:
        engine.dispose()
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(failure.value)
    assert secret not in safe_error_text(failure.value)
