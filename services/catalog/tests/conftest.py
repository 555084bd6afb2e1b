"""Fixtures of the catalog's own tests."""

from __future__ import annotations

import pytest_asyncio

from services.catalog.tests.helpers import CatalogFixtures


@pytest_asyncio.fixture(loop_scope="session")
async def catalog(suite):
    return CatalogFixtures(suite)
