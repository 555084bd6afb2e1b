"""The lean read path of shop.lib.db (Query, read_all, read_statement): the same rows, typed the
same way, on PostgreSQL (psycopg, autocommit, prepared) and SQLite (SQLAlchemy Core)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.lib.db import Database, Query, UTCDateTime, new_metadata


class ReadBase(DeclarativeBase):
    metadata = new_metadata()


class Gadget(ReadBase):
    __tablename__ = "gadgets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list] = mapped_column(JSON)
    made_at: Mapped[datetime] = mapped_column(UTCDateTime())


COLUMNS = [Gadget.id, Gadget.count, Gadget.tags, Gadget.made_at]
ONE = Query("SELECT id, count, tags, made_at FROM gadgets WHERE id = :id", COLUMNS)
MANY = Query(
    "SELECT id, count, tags, made_at FROM gadgets WHERE id IN :ids ORDER BY id",
    COLUMNS,
    postgres_sql="SELECT id, count, tags, made_at FROM gadgets WHERE id = ANY(:ids) ORDER BY id",
    expanding=("ids",),
)
MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_named_parameters_become_psycopg_placeholders_and_casts_stay():
    query = Query("SELECT :a::text, x FROM t WHERE y = :b_2 AND z = 'a:b'", [])
    assert query.psycopg == b"SELECT %(a)s::text, x FROM t WHERE y = %(b_2)s AND z = 'a:b'"
    with pytest.raises(ValueError):
        Query("SELECT 1 WHERE name LIKE 'a%'", [])


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request, databases, tmp_path):
    url = databases.create("reads") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'reads.db'}"
    db = Database(url)
    async with db.engine.begin() as connection:
        await connection.run_sync(ReadBase.metadata.create_all)
    async with db.transaction() as session:
        session.add_all([Gadget(id=f"g{i}", count=i, tags=["a", str(i)], made_at=MADE) for i in range(3)])
    yield db
    await db.dispose()


async def test_reads_return_typed_rows_on_both_databases(database):
    row = await database.read_one(ONE, id="g1")
    assert (row.id, row.count, row.tags, row.made_at) == ("g1", 1, ["a", "1"], MADE)
    assert row.made_at.tzinfo is not None
    assert await database.read_one(ONE, id="missing") is None
    assert [r.id for r in await database.read_all(MANY, ids=["g2", "g0", "nope"])] == ["g0", "g2"]
    rows = await database.read_statement(select(*COLUMNS).where(Gadget.count >= 1).order_by(Gadget.id.desc()))
    assert [(r.id, r.count) for r in rows] == [("g2", 2), ("g1", 1)]


async def test_a_read_sees_committed_writes_at_once(database):
    """No transaction is held between reads: a write committed in between is read next time."""
    assert (await database.read_one(ONE, id="g0")).count == 0
    async with database.transaction() as session:
        (await session.get(Gadget, "g0")).count = 10
    assert (await database.read_one(ONE, id="g0")).count == 10


def test_to_timestamp_matches_protobufs_own_conversion_in_any_zone():
    import random
    from datetime import timedelta, timezone

    from google.protobuf.timestamp_pb2 import Timestamp

    from shop.lib.db import to_timestamp

    rng = random.Random(8)
    for _ in range(500):
        value = datetime(1990, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**16))
        expected = Timestamp()
        expected.FromDatetime(value)
        assert to_timestamp(value) == expected
        assert to_timestamp(value.astimezone(timezone(timedelta(hours=-7, minutes=-30)))) == expected
    assert to_timestamp(None) == Timestamp()


async def test_reads_survive_the_server_ending_every_pooled_connection(databases):
    """A restart (or pg_terminate_backend) kills pooled connections: the next reads still answer."""
    import psycopg

    url = databases.create("reads_restart")
    db = Database(url, pool_size=3)
    async with db.engine.begin() as connection:
        await connection.run_sync(ReadBase.metadata.create_all)
    async with db.transaction() as session:
        session.add(Gadget(id="g", count=1, tags=[], made_at=MADE))
    try:
        await asyncio.gather(*(db.read_one(ONE, id="g") for _ in range(6)))  # fill the pool
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(databases.admin_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert row is not None  # an aggregate answers one row
        ended = row[0]
        assert ended >= 1
        for _ in range(5):
            assert (await db.read_one(ONE, id="g")).count == 1
    finally:
        await db.dispose()


async def test_writes_survive_the_server_ending_every_pooled_connection(databases):
    import psycopg

    url = databases.create("writes_restart")
    db = Database(url, pool_size=3)
    async with db.engine.begin() as connection:
        await connection.run_sync(ReadBase.metadata.create_all)
    insert = Query(
        "INSERT INTO gadgets (id, count, tags, made_at) VALUES (:id, 1, '[]', :made_at)",
        types={"made_at": UTCDateTime()},
    )
    try:

        async def write(key: str) -> None:
            async with db.write() as tx:
                assert await tx.execute(insert, id=key, made_at=MADE) == 1

        await asyncio.gather(*(write(f"before-{i}") for i in range(4)))  # fill the pool
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(databases.admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        for i in range(4):
            await write(f"after-{i}")
        with pytest.raises(ValueError):  # an exception inside rolls back
            async with db.write() as tx:
                await tx.execute(insert, id="rolled-back", made_at=MADE)
                raise ValueError("boom")
        assert await db.read_one(ONE, id="rolled-back") is None
        assert len(await db.read_all(MANY, ids=[f"after-{i}" for i in range(4)])) == 4
    finally:
        await db.dispose()
