"""Where session records are kept: `PostgresLedgerStore` (serve) or `SqliteLedgerStore` (dev).

Every method raises `LedgerStoreError` when the database cannot answer; the cause is chained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.ledger.record import SessionRecord
from app.ledger.sql import GroupBy

SQLITE_PREFIX = "sqlite:///"
# The embedded ledger of `live-relay dev` (unless RELAY_LEDGER_URL names another), which
# `live-relay usage` reads when RELAY_LEDGER_URL is unset.
DEV_LEDGER_URL = "sqlite:///.live-relay/ledger.sqlite3"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


class LedgerStoreError(Exception):
    """The ledger's database is unreachable or refused a statement."""


@dataclass(frozen=True)
class ReportQuery:
    project: str
    start: float  # unix seconds, inclusive
    end: float  # unix seconds, exclusive
    group_by: tuple[GroupBy, ...]


class LedgerStore(Protocol):
    async def migrate(self) -> None:
        """Apply the migrations this database has not had yet (safe from several replicas)."""

    async def write(self, records: Sequence[SessionRecord]) -> None:
        """Upsert `records` in one transaction: all of them are kept, or none."""

    async def report_sums(self, query: ReportQuery) -> list[dict[str, Any]]:
        """Rows of `sql.report`: `dim_<name>` per dimension, `price_model`, then `SUM_NAMES`."""

    async def records(self, project: str, start: float, end: float) -> list[SessionRecord]:
        """The project's records of sessions that started in [start, end)."""

    async def aclose(self) -> None:
        """Close connections."""


def describe(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


def open_ledger_store(url: str, *, timeout_seconds: float) -> LedgerStore:
    """The store `url` names; nothing is connected yet."""
    if url.startswith(POSTGRES_PREFIXES):
        from app.ledger.postgres import PostgresLedgerStore

        return PostgresLedgerStore(url, timeout_seconds=timeout_seconds)
    if url.startswith(SQLITE_PREFIX):
        from app.ledger.sqlite import SqliteLedgerStore

        return SqliteLedgerStore(Path(url.removeprefix(SQLITE_PREFIX)))
    raise ValueError(f"unknown ledger URL {describe(url)!r}")
