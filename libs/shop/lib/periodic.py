"""The one background loop: a periodic task (sweeps, relays, recovery, revocation polling).

`Periodic(name, run_once, interval)` runs `run_once` at start and then every `interval` seconds
(± `jitter`, so replicas started together do not all run at the same instant). A pass that
raises is logged (`<name>.failed`) and the loop goes on: the next pass retries. Cancelling the
task (ShopServer.stop does) or `stop()` ends it at once, also in the middle of a wait.

An instance is itself the loop factory `ServiceDefinition.background` takes:

    background=[Periodic("cart.sweep", runtime.sweep_once, lambda: settings.sweep_interval_seconds)]

One replica at a time, where a pass must not run on two replicas together: `exclusive=
AdvisoryLock(db, "cart.sweep")` takes a PostgreSQL advisory lock for the pass (the mechanism the
migrations already use: `pg_advisory_lock(hashtext(name))`, here the non-blocking try); a replica
that does not get it skips that pass. On SQLite (one process) the lock is always granted.
Work that many replicas share item by item (the outbox, the checkout recovery) keeps its
per-row leases instead and needs no lock here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog
from sqlalchemy import text

log = structlog.get_logger("shop.periodic")

Interval = float | Callable[[], float]


class AdvisoryLock:
    """A PostgreSQL session advisory lock held for one pass (see the module docstring)."""

    def __init__(self, db: Any, name: str) -> None:
        self.db = db
        self.name = f"periodic:{name}"

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields True when this replica holds the lock (released when the block ends)."""
        if not self.db.is_postgres:
            yield True
            return
        async with self.db.engine.connect() as connection:
            # autocommit: the lock belongs to the session, and no transaction stays open meanwhile
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            params = {"name": self.name}
            got = (await connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:name))"), params)).scalar()
            try:
                yield bool(got)
            finally:
                if got:
                    await connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), params)


class Periodic:
    def __init__(
        self,
        name: str,
        run_once: Callable[[], Awaitable[Any]],
        interval: Interval,
        *,
        jitter: float = 0.1,
        exclusive: AdvisoryLock | None = None,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction of the interval, 0 <= jitter < 1")
        self.name = name
        self.run_once = run_once
        self._interval = interval
        self.jitter = jitter
        self.exclusive = exclusive
        self.passes = 0  # passes that ran to the end
        self.failures = 0
        self.skipped = 0  # passes another replica held the lock for
        self._stop = asyncio.Event()

    def next_delay(self) -> float:
        """The wait before the next pass: the interval (read again each time) ± jitter."""
        interval = self._interval() if callable(self._interval) else self._interval
        if not self.jitter:
            return interval
        return max(0.0, interval * random.uniform(1 - self.jitter, 1 + self.jitter))

    async def run_pass(self) -> None:
        """One pass, never raising (a failure is logged and counted)."""
        try:
            if self.exclusive is None:
                await self.run_once()
            else:
                async with self.exclusive.held() as mine:
                    if not mine:
                        self.skipped += 1
                        return
                    await self.run_once()
            self.passes += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failures += 1
            log.exception(f"{self.name}.failed")

    async def run_forever(self) -> None:
        task = asyncio.current_task()
        while not self._stop.is_set():
            await self.run_pass()
            if task is not None and task.cancelling():
                # Cancelled during the pass, but something under it turned the CancelledError
                # into its own error: end anyway (ShopServer.stop would otherwise wait forever).
                raise asyncio.CancelledError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.next_delay())

    def stop(self) -> None:
        """Ends the loop after the pass in progress (cancel the task to end it at once)."""
        self._stop.set()

    def __call__(self) -> Coroutine[Any, Any, None]:
        return self.run_forever()
