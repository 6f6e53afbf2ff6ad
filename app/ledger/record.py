"""`SessionRecord`: what the ledger keeps of one session, and its JSON form for the spool.

A record carries the session's totals so far, never a delta: a checkpoint and the final record
of one session hold the same key (`session_id`) and a growing `version`, and a store keeps only
the highest version it was given. Writing a record twice, or an old one late (replayed from the
spool after a newer one), therefore changes nothing: no usage is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from app.ledger.usage import TOKEN_COLUMNS


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    version: int  # 1 for the first checkpoint; the final record has the highest
    final: bool  # False: a checkpoint of a running session
    project: str
    user_id: str | None  # the JWT subject or the session token's user; None for API keys
    credential: str  # "api_key:<key hash>", "jwt:<issuer>:<subject>", "session_token:<id>"
    auth_method: str
    model: str
    started_at: float  # unix seconds
    ended_at: float | None  # None in a checkpoint
    duration_seconds: float  # up to the checkpoint, or the whole session
    upstream_switches: int
    close_code: int | None  # None in a checkpoint
    closed_by: str | None  # "client", "upstream" or "relay"; None in a checkpoint
    outcome: str | None  # as in relay_sessions_total; None in a checkpoint
    usage_reports: int  # usageMetadata messages seen: 0 means "no usage reported"
    # Token columns (see usage.TOKEN_COLUMNS): None, not 0, when no usage was reported.
    tokens: Mapping[str, int] | None
    recorded_at: float  # when this version was made

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["tokens"] = dict(self.tokens) if self.tokens is not None else None
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SessionRecord:
        names = {f.name for f in fields(cls)}
        if set(value) != names:
            raise ValueError(f"not a session record: keys {sorted(value)}")
        tokens = value["tokens"]
        if tokens is not None and set(tokens) != set(TOKEN_COLUMNS):
            raise ValueError("not a session record: token columns differ")
        return cls(**value)

    def row(self) -> tuple[Any, ...]:
        """The record as a row of `RECORD_COLUMNS`."""
        tokens = self.tokens
        token_values = (
            tuple(tokens[name] for name in TOKEN_COLUMNS)
            if tokens is not None
            else (None,) * len(TOKEN_COLUMNS)
        )
        return (
            self.session_id,
            self.version,
            self.final,
            self.project,
            self.user_id,
            self.credential,
            self.auth_method,
            self.model,
            self.started_at,
            self.ended_at,
            self.duration_seconds,
            self.upstream_switches,
            self.close_code,
            self.closed_by,
            self.outcome,
            self.usage_reports,
            *token_values,
            self.recorded_at,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionRecord:
        reports = int(row["usage_reports"])
        return cls(
            session_id=row["session_id"],
            version=int(row["version"]),
            final=bool(row["final"]),
            project=row["project"],
            user_id=row["user_id"],
            credential=row["credential"],
            auth_method=row["auth_method"],
            model=row["model"],
            started_at=float(row["started_at"]),
            ended_at=None if row["ended_at"] is None else float(row["ended_at"]),
            duration_seconds=float(row["duration_seconds"]),
            upstream_switches=int(row["upstream_switches"]),
            close_code=row["close_code"],
            closed_by=row["closed_by"],
            outcome=row["outcome"],
            usage_reports=reports,
            tokens=None if reports == 0 else {name: int(row[name]) for name in TOKEN_COLUMNS},
            recorded_at=float(row["recorded_at"]),
        )


RECORD_COLUMNS: tuple[str, ...] = (
    "session_id",
    "version",
    "final",
    "project",
    "user_id",
    "credential",
    "auth_method",
    "model",
    "started_at",
    "ended_at",
    "duration_seconds",
    "upstream_switches",
    "close_code",
    "closed_by",
    "outcome",
    "usage_reports",
    *TOKEN_COLUMNS,
    "recorded_at",
)
