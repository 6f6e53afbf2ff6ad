"""The ledger in PostgreSQL (asyncpg), shared by every replica of `live-relay serve`.

Connections are opened on first use, not at start-up: a database that is down when the relay
starts only sends records to the spool until it is back. A connection broken by a restart of
the server is dropped by the pool and the next call opens a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from app.ledger import sql
from app.ledger.record import SessionRecord
from app.ledger.store import LedgerStoreError, ReportQuery, describe

# Two calls at most run at once: the batch writer and a report.
POOL_SIZE = 2
# Taken for the duration of a migration, so replicas starting together apply it once.
MIGRATION_LOCK_ID = 0x6C6564676572  # "ledger"

_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class PostgresLedgerStore:
    def __init__(self, url: str, *, timeout_seconds: float) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Any]:
        try:
            async with asyncio.timeout(self._timeout):
                pool = await self._open_pool()
                async with pool.acquire() as connection:
                    yield connection
        except _ERRORS as exc:
            raise LedgerStoreError(f"ledger {describe(self._url)}: {action} failed: {exc}") from exc

    async def _open_pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=0,
                    max_size=POOL_SIZE,
                    timeout=self._timeout,
                    command_timeout=self._timeout,
                    # Idle connections are closed after a minute: a restarted server leaves
                    # fewer dead ones behind.
                    max_inactive_connection_lifetime=60.0,
                )
            return self._pool

    async def migrate(self) -> None:
        async with self._connection("migrate") as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
            applied = await connection.fetchval(
                "SELECT COALESCE(MAX(version), 0) FROM ledger_schema_migrations"
            )
            for version, migration in enumerate(sql.MIGRATIONS, start=1):
                if version <= applied:
                    continue
                await connection.execute(migration)
                await connection.execute(
                    "INSERT INTO ledger_schema_migrations (version, applied_at) VALUES ($1, $2)",
                    version,
                    time.time(),
                )

    async def write(self, records: Sequence[SessionRecord]) -> None:
        statement = sql.upsert(sql.postgres_placeholder)
        rows = [record.row() for record in records]
        async with self._connection("write") as connection, connection.transaction():
            await connection.executemany(statement, rows)

    async def report_sums(self, query: ReportQuery) -> list[dict[str, Any]]:
        statement = sql.report("postgresql", query.group_by, sql.postgres_placeholder)
        async with self._connection("report") as connection:
            rows = await connection.fetch(statement, query.project, query.start, query.end)
        return [dict(row) for row in rows]

    async def records(self, project: str, start: float, end: float) -> list[SessionRecord]:
        statement = sql.select_records(sql.postgres_placeholder)
        async with self._connection("read") as connection:
            rows = await connection.fetch(statement, project, start, end)
        return [SessionRecord.from_row(dict(row)) for row in rows]

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await pool.close()
        except (TimeoutError, *_ERRORS):
            pool.terminate()
