"""Async SQLAlchemy engine and sessions for PostgreSQL (psycopg 3) and SQLite (aiosqlite).

One `Database` per service process. `db.transaction()` is the unit of work: one session, one
transaction, committed on success and rolled back on any exception.

Hot paths take the lean path instead: a `Query` (SQL written once, typed columns) run by
`db.read_all` / `db.read_one` with no transaction, or inside `db.write()` (one short
transaction), with no ORM. On PostgreSQL that is psycopg on an autocommit pool with server-side
prepared statements: one round trip per read, no BEGIN/COMMIT around it, no identity map. On
SQLite (the embedded local run) SQLAlchemy Core runs the same text, typed by the query's columns
so rows look alike on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import uuid
from collections import namedtuple
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    MetaData,
    Select,
    String,
    TypeDecorator,
    bindparam,
    event,
    text,
)
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute

log = structlog.get_logger("shop.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Each service declares its own subclass so each has its own MetaData (its own schema)."""

    __abstract__ = True


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime | None) -> Timestamp:
    """A timezone-aware datetime as a protobuf Timestamp; an unset Timestamp for None.
    (Exact integer arithmetic: several times cheaper than Timestamp.FromDatetime on hot reads.)"""
    if value is None:
        return Timestamp()
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def UUIDString() -> String:  # noqa: N802 - reads like a type in column declarations
    return String(36)


def async_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    parsed = make_url(async_url(url))
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# `:name` parameters, not `::type` casts.
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


# A column of a lean Query's rows: a Core column or an ORM attribute.
QueryColumn = ColumnElement[Any] | QueryableAttribute[Any]


def affected_rows(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run through `AsyncSession.execute` matched. The session types its
    result as `Result`; for those statements it is a `CursorResult`, which has the row count."""
    return cast(CursorResult[Any], result).rowcount


@functools.lru_cache(maxsize=512)
def _row_class(fields: tuple[str, ...]) -> Any:
    return namedtuple("Row", fields, rename=True)  # noqa: PYI024


def named_row(fields: tuple[str, ...], values: Sequence[Any]) -> Any:
    """A named tuple of `values` (the kind of row a lean read gives), e.g. one table's part of a
    joined row."""
    return _row_class(fields)._make(values)


def _tuples(result: Result[Any]) -> list:
    """SQLite's rows as the named tuples psycopg gives on PostgreSQL (`namedtuple_row`), so a
    lean row is the same kind of value on both (attributes, `_replace`)."""
    row_class = _row_class(tuple(result.keys()))
    return [row_class._make(row) for row in result.all()]


class Query:
    """A statement written once as SQL with `:name` parameters, with the columns it returns (if
    any) and the types of parameters that need one on SQLite (datetimes).

    `postgres_sql` replaces `sql` on PostgreSQL where the dialects differ (`= ANY(:ids)` there,
    `IN :ids` with `expanding=("ids",)` on SQLite; `FOR UPDATE`). Rows have the columns as attributes.
    """

    def __init__(
        self,
        sql: str,
        columns: Sequence[QueryColumn] = (),
        *,
        postgres_sql: str | None = None,
        expanding: Sequence[str] = (),
        types: dict[str, Any] | None = None,
    ) -> None:
        clause = text(sql)
        binds: list[BindParameter[Any]] = [bindparam(name, expanding=True) for name in expanding]
        binds += [bindparam(name, type_=type_) for name, type_ in (types or {}).items()]
        if binds:
            clause = clause.bindparams(*binds)
        self.core = clause.columns(*columns) if columns else clause
        # psycopg's named placeholders; a literal % would need doubling, so none may appear.
        postgres = postgres_sql or sql
        if "%" in postgres:
            raise ValueError("Query SQL may not contain '%'")
        # Bytes (the SQL is ASCII): psycopg would encode a str again on every execute.
        self.psycopg = _NAMED_PARAMETER.sub(r"%(\1)s", postgres).encode()


# A unique key already taken: the lean path raises psycopg's error on PostgreSQL and SQLAlchemy's
# on SQLite; the ORM path raises SQLAlchemy's on both. Catch this, not either one.
DUPLICATE_KEY = (IntegrityError, psycopg.errors.UniqueViolation)


_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK


async def _fetched(cursor: psycopg.AsyncCursor[Any]) -> list:
    """The rows of the statement the cursor ran; none for a write without RETURNING. Told by the
    result's status: `cursor.description` would build a Column object per field on every read."""
    result = cursor.pgresult
    return await cursor.fetchall() if result is not None and result.status == _TUPLES_OK else []


class Transaction:
    """One unit of work on the lean path (`Database.write()`): `Query` statements in a single
    transaction, committed when the block ends and rolled back on any exception."""

    def __init__(self, postgres: Any = None, core: AsyncConnection | None = None) -> None:
        self._postgres = postgres
        self._core = core

    @property
    def is_postgres(self) -> bool:
        return self._postgres is not None

    async def all(self, query: Query, **params: Any) -> list:
        if self._core is not None:
            return _tuples(await self._core.execute(query.core, params))
        return await _fetched(await self._postgres.execute(query.psycopg, params))

    async def one(self, query: Query, **params: Any) -> Any:
        rows = await self.all(query, **params)
        return rows[0] if rows else None

    async def execute(self, query: Query, **params: Any) -> int:
        """Runs a statement; the number of rows it changed."""
        if self._core is not None:
            return (await self._core.execute(query.core, params)).rowcount
        return (await self._postgres.execute(query.psycopg, params)).rowcount


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, max_overflow: int = 10, echo: bool = False) -> None:
        if not url:
            raise ValueError("SHOP_DATABASE_URL is not set")
        self.url = async_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        # hide_parameters: a failed statement's error (and so every log line) never carries the
        # bound values (emails, tokens, password hashes), only the SQL.
        kwargs: dict = {"echo": echo, "pool_pre_ping": True, "hide_parameters": True}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._lean_pool_size = pool_size
        self._lean_pool_instance: AsyncConnectionPool | None = None
        self._lean_pool_lock = asyncio.Lock()
        self._compiled: dict[Select, Any] = {}

    @classmethod
    def from_settings(cls, settings) -> Database:
        """The service's database with the pool sized by SHOP_DB_POOL_SIZE / SHOP_DB_MAX_OVERFLOW."""
        return cls(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session without an explicit transaction (reads; commit yourself when writing)."""
        async with self.sessions() as session:
            yield session

    async def _lean_pool(self) -> AsyncConnectionPool:
        if self._lean_pool_instance is not None:
            return self._lean_pool_instance
        async with self._lean_pool_lock:
            if self._lean_pool_instance is not None:
                return self._lean_pool_instance
            conninfo = sync_url(self.url).replace("postgresql+psycopg://", "postgresql://", 1)
            pool = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=self._lean_pool_size,
                # autocommit: a read is one statement, with no BEGIN/COMMIT round trips;
                # prepare_threshold=0: prepared on first use, so each read skips planning.
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": namedtuple_row},
                open=False,
                name="shop-lean",
            )
            await pool.open()
            self._lean_pool_instance = pool
            return pool

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """A lean unit of work: one transaction of prepared `Query` statements (psycopg on
        PostgreSQL, SQLAlchemy Core on SQLite), with none of the ORM's per-statement work."""
        if self.dialect != "postgresql":
            async with self.engine.begin() as connection:
                yield Transaction(core=connection)
            return
        pool = await self._lean_pool()
        connection, _ = await self._on_live_connection(pool, "BEGIN")
        try:
            yield Transaction(postgres=connection)
            await connection.execute("COMMIT")
        except BaseException:
            if not connection.broken:
                with contextlib.suppress(psycopg.Error):
                    await connection.execute("ROLLBACK")
            raise
        finally:
            await pool.putconn(connection)

    async def _on_live_connection(
        self, pool: AsyncConnectionPool, sql: str | bytes, params: dict[str, Any] | None = None
    ) -> tuple[Any, Any]:
        """A pooled connection that ran `sql` (a read, or a write's BEGIN), and its cursor; the
        caller puts the connection back. A connection the server ended (a restart, a terminated
        session) fails before anything ran on it: the pool drops it and another one is tried, so
        there is no ping per checkout and still no error for the caller."""
        for attempt in range(self._lean_pool_size + 1):
            connection = await pool.getconn()
            try:
                return connection, await connection.execute(sql, params)
            except psycopg.OperationalError:
                await pool.putconn(connection)
                if not connection.broken or attempt == self._lean_pool_size:
                    raise
                log.warning("db.retried_on_a_dead_connection")
            except BaseException:
                await pool.putconn(connection)
                raise
        raise AssertionError("unreachable")

    async def read_all(self, query: Query, **params) -> list:
        """The rows of a lean read (see the module docstring)."""
        if self.dialect != "postgresql":
            async with self.engine.connect() as connection:
                return _tuples(await connection.execute(query.core, params))
        return await self._postgres_read(query.psycopg, params)

    async def _postgres_read(self, sql: str | bytes, params: dict[str, Any]) -> list:
        """One statement on the autocommit pool: the rows it returns (none for a write without RETURNING)."""
        pool = await self._lean_pool()
        connection, cursor = await self._on_live_connection(pool, sql, params)
        try:
            return await _fetched(cursor)
        finally:
            await pool.putconn(connection)

    async def read_statement(self, statement: Select, params: dict[str, Any] | None = None) -> list:
        """The rows of a SQLAlchemy Core statement on the lean path. Build the statement once (its
        values as `bindparam`s, given in `params`): on PostgreSQL it is compiled on first use and
        the SQL kept for the statement's lifetime, like a `Query`."""
        if self.dialect != "postgresql":
            async with self.engine.connect() as connection:
                return _tuples(await connection.execute(statement, params or {}))
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            if len(self._compiled) > 1_000:  # statements are built per shape: a few hundred at most
                self._compiled.clear()
            self._compiled[statement] = compiled
        return await self._postgres_read(compiled.string, {**compiled.params, **(params or {})})

    async def write_one(self, query: Query, **params: Any) -> list:
        """One write statement on its own, atomic by itself: on PostgreSQL in autocommit (one round
        trip, no BEGIN/COMMIT), on SQLite in its own transaction. The rows it returns (RETURNING)."""
        if self.dialect != "postgresql":
            async with self.engine.begin() as connection:
                result = await connection.execute(query.core, params)
                return _tuples(result) if result.returns_rows else []
        return await self._postgres_read(query.psycopg, params)

    async def read_one(self, query: Query, **params):
        """The first row of a lean read, or None."""
        rows = await self.read_all(query, **params)
        return rows[0] if rows else None

    async def ping(self, timeout: float) -> bool:
        """Whether the database answers `SELECT 1` within `timeout` seconds (readiness)."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (TimeoutError, OSError, SQLAlchemyError):
            return False
        return True

    async def dispose(self) -> None:
        if self._lean_pool_instance is not None:
            await self._lean_pool_instance.close()
            self._lean_pool_instance = None
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by make run
        # aiosqlite's default transaction handling is replaced by explicit BEGIN IMMEDIATE so that
        # writers queue on the busy timeout instead of failing with "database is locked".
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):  # pragma: no cover
        connection.exec_driver_sql("BEGIN IMMEDIATE")
