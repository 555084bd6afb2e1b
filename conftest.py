"""Fixtures shared by every test in the repository (see tests/harness.py)."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.harness import Suite, TestDatabases, postgres_admin_url


@pytest.fixture(scope="session")
def databases():
    dbs = TestDatabases(postgres_admin_url())
    yield dbs
    dbs.drop_all()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def suite(databases):
    """The whole shop (five services + gateway) against PostgreSQL, shared by the session's tests."""
    running = Suite(databases)
    await running.start()
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http(suite):
    return suite.http
