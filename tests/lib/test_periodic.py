"""shop.lib.periodic: the one background loop (interval, jitter, failures logged, prompt stop,
one replica at a time by advisory lock)."""

from __future__ import annotations

import asyncio

import pytest

from shop.lib.db import Database
from shop.lib.periodic import AdvisoryLock, Periodic


async def test_runs_at_start_then_every_interval_and_survives_failures():
    calls: list[int] = []

    async def run_once():
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("database blip")

    task = Periodic("test.loop", run_once, 0.01, jitter=0)
    running = asyncio.create_task(task())
    for _ in range(200):
        if len(calls) >= 4:
            break
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert len(calls) >= 4  # the failed second pass did not end the loop
    assert task.failures == 1 and task.passes == len(calls) - 1


async def test_the_interval_is_read_again_for_each_wait_and_jitter_stays_in_bounds():
    settings = {"interval": 10.0}
    task = Periodic("test.loop", lambda: asyncio.sleep(0), lambda: settings["interval"], jitter=0.2)
    delays = [task.next_delay() for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in delays) and len(set(delays)) > 1
    settings["interval"] = 1.0
    assert 0.8 <= task.next_delay() <= 1.2
    assert Periodic("t", lambda: asyncio.sleep(0), 5.0, jitter=0).next_delay() == 5.0
    with pytest.raises(ValueError):
        Periodic("t", lambda: asyncio.sleep(0), 5.0, jitter=1.5)


async def test_stop_and_cancel_end_the_loop_promptly_during_a_long_wait():
    task = Periodic("test.loop", lambda: asyncio.sleep(0), 3600)
    running = asyncio.create_task(task.run_forever())
    await asyncio.sleep(0.05)
    task.stop()
    await asyncio.wait_for(running, 1)  # not an hour
    assert task.passes == 1

    other = Periodic("test.loop", lambda: asyncio.sleep(0), 3600)
    running = asyncio.create_task(other())
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 1)


async def test_a_cancelled_pass_is_not_counted_as_a_failure():
    started = asyncio.Event()

    async def slow():
        started.set()
        await asyncio.sleep(3600)

    task = Periodic("test.loop", slow, 1)
    running = asyncio.create_task(task())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert task.failures == 0


async def test_a_cancel_that_the_pass_swallowed_still_ends_the_loop():
    """A driver under the pass may turn the CancelledError into its own error (seen: a cart
    sweep cancelled by ShopServer.stop right after start, whose stop then waited forever)."""
    started = asyncio.Event()

    async def swallowing():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed while cancelling") from None

    task = Periodic("test.loop", swallowing, 3600)
    running = asyncio.create_task(task())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(running), 2)
    assert running.cancelled()


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request, databases, tmp_path):
    url = databases.create("periodic") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'p.db'}"
    db = Database(url)
    yield db
    await db.dispose()


async def test_one_replica_at_a_time_with_the_advisory_lock(database):
    inside = asyncio.Event()
    leave = asyncio.Event()
    ran = []

    async def first_pass():
        ran.append("first")
        inside.set()
        await leave.wait()

    async def second_pass():
        ran.append("second")

    first = Periodic("test.exclusive", first_pass, 1, exclusive=AdvisoryLock(database, "test.exclusive"))
    second = Periodic("test.exclusive", second_pass, 1, exclusive=AdvisoryLock(database, "test.exclusive"))
    holding = asyncio.create_task(first.run_pass())
    await inside.wait()
    await second.run_pass()
    if database.is_postgres:  # the other "replica" skipped its pass while the lock was held
        assert ran == ["first"] and second.skipped == 1 and second.passes == 0
    else:  # one process: always granted
        assert ran == ["first", "second"]
    leave.set()
    await holding
    await second.run_pass()  # released: the next pass runs
    assert ran[-1] == "second" and first.passes == 1
