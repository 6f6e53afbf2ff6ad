"""A PostgreSQL database of a test's own, on the machine's server (127.0.0.1:5432, trust auth).

`LIVE_RELAY_TEST_POSTGRES` names another server (a URL of its maintenance database). Each test
creates a database with a random name and drops it afterwards, so tests never share rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

SERVER_URL = os.environ.get(
    "LIVE_RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(name: str) -> str:
    return SERVER_URL.rsplit("/", 1)[0] + "/" + name


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """The URL of a fresh, empty database, dropped on exit."""
    name = "live_relay_test_" + secrets.token_hex(6)
    try:
        admin = await asyncpg.connect(SERVER_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"the ledger tests need PostgreSQL at {SERVER_URL} (trust auth): {exc}; "
            "start one, or name another with LIVE_RELAY_TEST_POSTGRES"
        ) from exc
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
