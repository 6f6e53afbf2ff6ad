"""`live-relay usage`: the usage report at a terminal, read from the ledger's database.

The same report as `GET /v1/projects/{project}/usage/report`, for an operator with access to
the database (RELAY_LEDGER_URL, or the dev relay's SQLite file when that is unset).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.auth.projects import load_projects
from app.auth.projects_file import ProjectsFileError
from app.ledger.prices import PricesFileError, load_prices
from app.ledger.report import (
    build_report,
    csv_columns,
    flat_rows,
    parse_group_by,
    parse_rfc3339,
    rfc3339,
    to_csv,
)
from app.ledger.store import (
    DEV_LEDGER_URL,
    SQLITE_PREFIX,
    LedgerStoreError,
    ReportQuery,
    open_ledger_store,
)
from app.settings import SettingsError, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, help="the project to report on")
    parser.add_argument(
        "--start", help="RFC 3339 start, inclusive (default: the first of this month, UTC)"
    )
    parser.add_argument("--end", help="RFC 3339 end, exclusive (default: now)")
    parser.add_argument(
        "--group-by",
        default="",
        help="comma-separated dimensions: user, model, credential, day (default: none)",
    )
    parser.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format"
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"live-relay: {exc}", file=sys.stderr)
        return 2
    url = settings.ledger_url
    if url is None:
        if not Path(DEV_LEDGER_URL.removeprefix(SQLITE_PREFIX)).exists():
            print(
                "live-relay: no ledger to read: set RELAY_LEDGER_URL (postgresql://... or "
                "sqlite:///path)",
                file=sys.stderr,
            )
            return 2
        url = DEV_LEDGER_URL
    now = datetime.now(UTC)
    try:
        start = (
            parse_rfc3339(args.start)
            if args.start
            else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        )
        end = parse_rfc3339(args.end) if args.end else (now + timedelta(seconds=1)).timestamp()
        group_by = parse_group_by([args.group_by])
        prices = load_prices(settings.ledger_prices_file)
        if settings.projects_file is not None:
            for project in load_projects(settings.projects_file, settings):
                if project.name == args.project:
                    prices = prices.with_overrides(project.name, project.prices)
    except (ValueError, PricesFileError, ProjectsFileError) as exc:
        print(f"live-relay: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("live-relay: --end must be after --start", file=sys.stderr)
        return 2
    query = ReportQuery(args.project, start, end, group_by)
    try:
        report = asyncio.run(_report(url, settings.ledger_timeout_seconds, prices, query))
    except LedgerStoreError as exc:
        print(f"live-relay: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "csv":
        print(to_csv(report), end="")
    else:
        print(_table(report))
    return 0


async def _report(
    url: str, timeout_seconds: float, prices: Any, query: ReportQuery
) -> dict[str, Any]:
    store = open_ledger_store(url, timeout_seconds=timeout_seconds)
    try:
        return await build_report(store, prices, query)
    finally:
        await store.aclose()


# The columns a terminal shows; --format csv has every modality.
_TABLE_FIGURES = ("sessions", "seconds", "promptTokens", "responseTokens", "totalTokens", "costUsd")


def _table(report: dict[str, Any]) -> str:
    columns = [*report["groupBy"], *_TABLE_FIGURES]
    assert set(columns) <= set(csv_columns(report["groupBy"]))
    lines = [[_cell(name) for name in columns]]
    lines += [[_cell(row.get(name)) for name in columns] for row in flat_rows(report)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    text = [
        f"usage of project {report['project']} from {report['start']} to {report['end']} "
        f"(prices: {report['prices']['asOf']})"
    ]
    text += [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    if not report["rows"]:
        text.append("(no sessions)")
    return "\n".join(text)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


__all__ = ["configure", "rfc3339", "run"]
