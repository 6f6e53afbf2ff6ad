"""Ledger tests: the relay in front of the emulator, its records in a real database.

`ledger_url` runs a test once per store: the embedded SQLite file and a PostgreSQL database
created for the test (tests/support/postgres.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.postgres import postgres_database


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    async with postgres_database() as url:
        yield url
