"""Alembic per service, applied at start. Each service's `migrations/env.py` calls `run_env`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, pool, text

from shop.lib.db import is_sqlite, sync_url


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(migrations_dir: Path, database_url: str) -> None:
    command.upgrade(alembic_config(migrations_dir, database_url), "head")


async def upgrade_async(migrations_dir: Path, database_url: str) -> None:
    await asyncio.to_thread(upgrade, migrations_dir, database_url)


def migration_engine(url: str) -> Engine:
    # hide_parameters: a failed statement's error (and so its log line) never carries the values
    # it was given, as the services' own engines (shop.lib.db).
    return create_engine(url, poolclass=pool.NullPool, hide_parameters=True)


def run_env(target_metadata: MetaData, lock_name: str) -> None:
    """Body of every service's env.py: online migrations under an advisory lock on PostgreSQL,
    so replicas starting together migrate one at a time."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:  # upgrade() always sets it
        raise RuntimeError("alembic config has no sqlalchemy.url")
    engine = migration_engine(url)
    with engine.connect() as connection:
        if not is_sqlite(url):
            connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": lock_name})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=is_sqlite(url),
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if not is_sqlite(url):
                connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": lock_name})
                connection.commit()
    engine.dispose()
