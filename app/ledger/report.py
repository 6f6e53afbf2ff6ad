"""The usage report: a project's sessions in a time range, summed by the dimensions asked for.

The contract (docs/usage.md): `{"project", "start", "end", "groupBy", "prices", "rows": [...]}`,
each row holding its `groupBy` dimensions (`user`, `model`, `credential`, `day`) and
`sessions`, `sessionsWithoutUsage`, `seconds`, `promptTokens`, `responseTokens`,
`cachedTokens`, `thinkingTokens`, `toolUseTokens`, `totalTokens`, `byModality` and `costUsd`.
A session belongs to the range its start falls in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.ledger.prices import PriceTable
from app.ledger.sql import GroupBy
from app.ledger.store import LedgerStore, ReportQuery
from app.ledger.usage import DETAILED_KINDS, MODALITIES, TOKEN_COLUMNS, kind_column
from app.ledger.usage import modality_column as column_of

_KIND_KEYS = {
    "prompt": "promptTokens",
    "response": "responseTokens",
    "cached": "cachedTokens",
    "thinking": "thinkingTokens",
    "tool_use": "toolUseTokens",
}
_MODALITY_KIND_KEYS = {"prompt": "prompt", "response": "response", "cached": "cached"}
_MODALITY_KIND_KEYS["tool_use"] = "toolUse"


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 time with an offset (ValueError otherwise)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time (2026-12-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    return moment.timestamp()


def parse_group_by(values: Sequence[str]) -> tuple[GroupBy, ...]:
    """`groupBy` values (repeated or comma-separated) in order, without repeats."""
    chosen: list[GroupBy] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in ("user", "model", "credential", "day"):
                raise ValueError(f"groupBy {name!r} is not one of user, model, credential, day")
            if name not in chosen:
                chosen.append(name)  # type: ignore[arg-type]
    return tuple(chosen)


def _number(value: Any) -> int:
    # PostgreSQL sums BIGINT as NUMERIC (Decimal); SQLite as int; NULL when no session had usage.
    return int(value) if value is not None else 0


async def build_report(
    store: LedgerStore, prices: PriceTable, query: ReportQuery
) -> dict[str, Any]:
    sums = await store.report_sums(query)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for found in sums:
        key = tuple(found[f"dim_{name}"] for name in query.group_by)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {name: value for name, value in zip(query.group_by, key, strict=True)}
            row |= {"sessions": 0, "sessionsWithoutUsage": 0, "seconds": 0.0, "costUsd": 0.0}
            row["_tokens"] = dict.fromkeys(TOKEN_COLUMNS, 0)
        row["sessions"] += _number(found["sessions"])
        row["sessionsWithoutUsage"] += _number(found["sessions_without_usage"])
        row["seconds"] += float(found["seconds"] or 0.0)
        tokens = {name: _number(found[name]) for name in TOKEN_COLUMNS}
        for name, count in tokens.items():
            row["_tokens"][name] += count
        price = prices.for_model(found["price_model"])
        if price is None or row["costUsd"] is None:
            row["costUsd"] = None  # a model without a price: the row's cost is unknown
        else:
            row["costUsd"] += price.cost(tokens)
    return {
        "project": query.project,
        "start": rfc3339(query.start),
        "end": rfc3339(query.end),
        "groupBy": list(query.group_by),
        "prices": {"source": prices.source, "asOf": prices.as_of},
        "rows": [_finish(row) for row in rows.values()],
    }


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    tokens: Mapping[str, int] = row.pop("_tokens")
    row["seconds"] = round(row["seconds"], 3)
    for kind, key in _KIND_KEYS.items():
        row[key] = tokens[kind_column(kind)]
    row["totalTokens"] = tokens["total_tokens"]
    row["byModality"] = {
        _MODALITY_KIND_KEYS[kind]: {
            modality: tokens[column_of(kind, modality)] for modality in MODALITIES
        }
        for kind in DETAILED_KINDS
    }
    if row["costUsd"] is not None:
        row["costUsd"] = round(row["costUsd"], 6)
    return row


def csv_columns(group_by: Sequence[str]) -> list[str]:
    return [
        *group_by,
        "sessions",
        "sessionsWithoutUsage",
        "seconds",
        *_KIND_KEYS.values(),
        "totalTokens",
        *(
            f"{_MODALITY_KIND_KEYS[kind]}{modality.title()}Tokens"
            for kind in DETAILED_KINDS
            for modality in MODALITIES
        ),
        "costUsd",
    ]


def flat_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's rows with `byModality` spread into columns (`promptAudioTokens`, ...)."""
    flat = []
    for row in report["rows"]:
        values = {key: value for key, value in row.items() if key != "byModality"}
        for kind_key, by_modality in row["byModality"].items():
            for modality, count in by_modality.items():
                values[f"{kind_key}{modality.title()}Tokens"] = count
        flat.append(values)
    return flat


def to_csv(report: Mapping[str, Any]) -> str:
    """The report's rows as CSV with a header line; an unknown cost is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(report["groupBy"]), lineterminator="\n")
    writer.writeheader()
    for values in flat_rows(report):
        writer.writerow({key: "" if value is None else value for key, value in values.items()})
    return buffer.getvalue()
