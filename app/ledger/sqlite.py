"""The embedded ledger store: one SQLite file, for `live-relay dev` and single-host setups.

sqlite3 blocks, so every call runs on one thread of its own (one connection, used by that
thread only), off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.ledger import sql
from app.ledger.record import SessionRecord
from app.ledger.store import LedgerStoreError, ReportQuery

T = TypeVar("T")


class SqliteLedgerStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        self._connection: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._with_connection, work)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerStoreError(f"ledger {self.path}: {exc}") from exc

    def _with_connection(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10.0)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            self._connection = connection
        return work(self._connection)

    async def migrate(self) -> None:
        await self._run(_migrate)

    async def write(self, records: Sequence[SessionRecord]) -> None:
        statement = sql.upsert(sql.sqlite_placeholder)
        rows = [record.row() for record in records]

        def write(connection: sqlite3.Connection) -> None:
            with connection:  # one transaction: commits, or rolls back on error
                connection.executemany(statement, rows)

        await self._run(write)

    async def report_sums(self, query: ReportQuery) -> list[dict[str, Any]]:
        statement = sql.report("sqlite", query.group_by, sql.sqlite_placeholder)
        parameters = (query.project, query.start, query.end)

        def select(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(row) for row in connection.execute(statement, parameters)]

        return await self._run(select)

    async def records(self, project: str, start: float, end: float) -> list[SessionRecord]:
        statement = sql.select_records(sql.sqlite_placeholder)

        def select(connection: sqlite3.Connection) -> list[SessionRecord]:
            rows = connection.execute(statement, (project, start, end))
            return [SessionRecord.from_row(dict(row)) for row in rows]

        return await self._run(select)

    async def aclose(self) -> None:
        def close(connection: sqlite3.Connection) -> None:
            connection.close()

        if self._connection is not None:
            await self._run(close)
            self._connection = None
        self._executor.shutdown(wait=True)


def _migrate(connection: sqlite3.Connection) -> None:
    with connection:
        connection.execute(sql.CREATE_MIGRATIONS_TABLE)
    # BEGIN IMMEDIATE takes the write lock first: two processes cannot both apply a migration.
    connection.execute("BEGIN IMMEDIATE")
    try:
        applied = connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM ledger_schema_migrations"
        ).fetchone()[0]
        for version, migration in enumerate(sql.MIGRATIONS, start=1):
            if version <= applied:
                continue
            for statement in migration.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(
                "INSERT INTO ledger_schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
