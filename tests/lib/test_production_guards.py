"""Production refuses what would leak secrets into logs: the console mail backend (it prints
password-reset and verification links) and database errors carrying their bound values."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.auth.config import AuthSettings
from services.orders.config import OrdersSettings
from shop.lib.db import Database
from shop.lib.logging import scrub_database_errors
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
