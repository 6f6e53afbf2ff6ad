"""The ledger's SQL, one text for PostgreSQL and SQLite (they differ only where said).

Statements are assembled from this module's constants only (column names, placeholders);
every value travels as a bound parameter (hence S608 is off for this file in pyproject.toml).

Both stores apply `MIGRATIONS` in order and record each in `ledger_schema_migrations`; a
migration is never edited once released, a change of schema is a new one appended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

from app.ledger.record import RECORD_COLUMNS
from app.ledger.usage import TOKEN_COLUMNS

Dialect = Literal["postgresql", "sqlite"]
GroupBy = Literal["user", "model", "credential", "day"]
GROUP_BY_CHOICES: Final[tuple[GroupBy, ...]] = ("user", "model", "credential", "day")

_TOKEN_COLUMN_DEFINITIONS = ",\n    ".join(f"{name} BIGINT" for name in TOKEN_COLUMNS)

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: one row per session, its highest version.
    f"""
CREATE TABLE ledger_sessions (
    session_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    final BOOLEAN NOT NULL,
    project TEXT NOT NULL,
    user_id TEXT,
    credential TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    model TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    duration_seconds DOUBLE PRECISION NOT NULL,
    upstream_switches INTEGER NOT NULL,
    close_code INTEGER,
    closed_by TEXT,
    outcome TEXT,
    usage_reports INTEGER NOT NULL,
    {_TOKEN_COLUMN_DEFINITIONS},
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX ledger_sessions_project_started ON ledger_sessions (project, started_at);
""",
)

CREATE_MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS ledger_schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""

Placeholder = Callable[[int], str]  # 1-based position -> "$1" or "?"


def postgres_placeholder(position: int) -> str:
    return f"${position}"


def sqlite_placeholder(position: int) -> str:
    return "?"


def upsert(placeholder: Placeholder) -> str:
    """Insert a record, or replace the stored one if this one has a higher version: replaying
    an older version (from the spool) or the same one twice changes nothing."""
    columns = ", ".join(RECORD_COLUMNS)
    values = ", ".join(placeholder(i) for i in range(1, len(RECORD_COLUMNS) + 1))
    updates = ", ".join(f"{name} = excluded.{name}" for name in RECORD_COLUMNS[1:])
    return (
        f"INSERT INTO ledger_sessions ({columns}) VALUES ({values}) "
        f"ON CONFLICT (session_id) DO UPDATE SET {updates} "
        "WHERE ledger_sessions.version < excluded.version"
    )


def _dimension(name: GroupBy, dialect: Dialect) -> str:
    if name == "user":
        return "user_id"
    if name == "day":  # the UTC day the session started
        if dialect == "postgresql":
            return "to_char(to_timestamp(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return "strftime('%Y-%m-%d', started_at, 'unixepoch')"
    return name


# Sums of a report row, after its dimensions and the model.
SUM_NAMES: Final = ("sessions", "seconds", "sessions_without_usage", *TOKEN_COLUMNS)


def report(dialect: Dialect, group_by: Sequence[GroupBy], placeholder: Placeholder) -> str:
    """Sums of a project's sessions that started in [start, end), by `group_by` and model
    (cost is priced per model). Parameters: project, start, end (unix seconds)."""
    selected = [f"{_dimension(name, dialect)} AS dim_{name}" for name in group_by]
    sums = [
        "COUNT(*) AS sessions",
        "SUM(duration_seconds) AS seconds",
        "SUM(CASE WHEN usage_reports = 0 THEN 1 ELSE 0 END) AS sessions_without_usage",
        *(f"SUM({name}) AS {name}" for name in TOKEN_COLUMNS),
    ]
    keys = ", ".join(str(i) for i in range(1, len(group_by) + 2))
    return (
        f"SELECT {', '.join([*selected, 'model AS price_model', *sums])} FROM ledger_sessions "
        f"WHERE project = {placeholder(1)} AND started_at >= {placeholder(2)} "
        f"AND started_at < {placeholder(3)} GROUP BY {keys} ORDER BY {keys}"
    )


def select_records(placeholder: Placeholder) -> str:
    """A project's records of sessions that started in [start, end), oldest first."""
    return (
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM ledger_sessions "
        f"WHERE project = {placeholder(1)} AND started_at >= {placeholder(2)} "
        f"AND started_at < {placeholder(3)} ORDER BY started_at, session_id"
    )
