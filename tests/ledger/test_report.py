"""The usage report (admin endpoint and `live-relay usage`): its sums equal the records'."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth.keys import hash_api_key
from app.emulator import Emulator
from app.ledger.record import SessionRecord
from app.ledger.store import open_ledger_store
from tests.ledger.support import ADMIN_TOKEN, expected_tokens, final_records, mint, session
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.support.relay import RunningRelay, running_relay

START = "2020-01-01T00:00:00Z"
END = "2100-01-01T00:00:00Z"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Run:
    """A relay after a mixed run: sessions of an API key (no user), alice's and bob's."""

    def __init__(self, relay: RunningRelay, records: list[SessionRecord], ledger_url: str):
        self.relay = relay
        self.records = records
        self.ledger_url = ledger_url
        self.expected_by_user: dict[str | None, Counter[str]] = {}

    async def report(self, **params: str) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.get(
                f"{self.relay.http_url}/v1/projects/default/usage/report",
                params={"start": START, "end": END, **params},
                headers=ADMIN,
            )


@pytest.fixture
async def run(emulator: Emulator, ledger_url: str, tmp_path: Path) -> AsyncIterator[Run]:
    settings = relay_settings(
        emulator,
        None,
        ledger_url=ledger_url,
        ledger_spool_dir=tmp_path / "spool",
        admin_token=ADMIN_TOKEN,
    )
    store = open_ledger_store(ledger_url, timeout_seconds=5)
    try:
        async with running_relay(settings) as relay:
            expected: dict[str | None, Counter[str]] = {}
            plan: list[tuple[str | None, list[str], str]] = [
                (None, ["a key's session"], "TEXT"),
                (None, ["another", "with two turns"], "AUDIO"),
                ("alice", ["alice speaks"], "TEXT"),
                ("alice", ["alice again", "and again"], "TEXT"),
                ("bob", ["bob once"], "AUDIO"),
            ]
            for user, texts, modality in plan:
                headers = auth_headers() if user is None else await mint(relay.http_url, user)
                reports = await session(relay, headers, texts, modality)
                expected.setdefault(user, Counter()).update(expected_tokens(reports))
            records = await final_records(store, "default", len(plan))
            running = Run(relay, records, ledger_url)
            running.expected_by_user = expected
            yield running
    finally:
        await store.aclose()


def _record_sums(records: list[SessionRecord]) -> dict[str, Any]:
    tokens: Counter[str] = Counter()
    for record in records:
        tokens.update(record.tokens or {})
    return {
        "sessions": len(records),
        "seconds": round(sum(record.duration_seconds for record in records), 3),
        "promptTokens": tokens["prompt_tokens"],
        "responseTokens": tokens["response_tokens"],
        "totalTokens": tokens["total_tokens"],
        "promptAudio": tokens["prompt_audio"],
        "responseAudio": tokens["response_audio"],
        "responseText": tokens["response_text"],
    }


def _row_sums(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessions": row["sessions"],
        "seconds": row["seconds"],
        "promptTokens": row["promptTokens"],
        "responseTokens": row["responseTokens"],
        "totalTokens": row["totalTokens"],
        "promptAudio": row["byModality"]["prompt"]["AUDIO"],
        "responseAudio": row["byModality"]["response"]["AUDIO"],
        "responseText": row["byModality"]["response"]["TEXT"],
    }


async def test_rows_by_user_sum_the_records_and_what_the_upstream_reported(run: Run) -> None:
    answer = await run.report(groupBy="user")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["project"], body["start"], body["end"]) == ("default", START, END)
    rows = {row["user"]: row for row in body["rows"]}
    assert set(rows) == {None, "alice", "bob"}
    for user, row in rows.items():
        mine = [record for record in run.records if record.user_id == user]
        assert _row_sums(row) == pytest.approx(_record_sums(mine), abs=0.002)
        expected = run.expected_by_user[user]
        assert row["promptTokens"] == expected["prompt_tokens"]
        assert row["responseTokens"] == expected["response_tokens"]
        assert row["totalTokens"] == expected["total_tokens"]
        assert set(row) == {
            "user",
            "sessions",
            "sessionsWithoutUsage",
            "seconds",
            "promptTokens",
            "responseTokens",
            "cachedTokens",
            "thinkingTokens",
            "toolUseTokens",
            "totalTokens",
            "byModality",
            "costUsd",
        }
    assert rows["alice"]["sessions"] == 2
    assert rows[None]["sessions"] == 2


async def test_cost_is_priced_per_modality_from_the_built_in_table(run: Run) -> None:
    body = (await run.report()).json()
    [row] = body["rows"]  # no groupBy: one row for the project
    by = row["byModality"]
    # gemini-live-2.5-flash: input TEXT 0.50, AUDIO 3.00; output TEXT 2.00, AUDIO 12.00 per 1M.
    expected = (
        by["prompt"]["TEXT"] * 0.50
        + by["prompt"]["AUDIO"] * 3.00
        + by["response"]["TEXT"] * 2.00
        + by["response"]["AUDIO"] * 12.00
    ) / 1_000_000
    assert row["promptTokens"] == by["prompt"]["TEXT"] + by["prompt"]["AUDIO"]
    assert row["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert row["costUsd"] > 0
    assert body["prices"]["asOf"]


async def test_rows_by_model_credential_and_day(run: Run) -> None:
    body = (await run.report(groupBy="model,credential,day")).json()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    credentials = {record.credential for record in run.records}
    assert {(row["model"], row["day"]) for row in body["rows"]} == {(MODEL, today)}
    assert {row["credential"] for row in body["rows"]} == credentials
    assert sum(row["sessions"] for row in body["rows"]) == len(run.records)


async def test_csv_gives_the_same_rows(run: Run) -> None:
    rows = {row["user"] or "": row for row in (await run.report(groupBy="user")).json()["rows"]}
    answer = await run.report(groupBy="user", format="csv")
    assert answer.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(parsed) == len(rows)
    for line in parsed:
        row = rows[line["user"]]
        assert int(line["sessions"]) == row["sessions"]
        assert int(line["totalTokens"]) == row["totalTokens"]
        assert int(line["responseAudioTokens"]) == row["byModality"]["response"]["AUDIO"]
        assert float(line["costUsd"]) == pytest.approx(row["costUsd"])


async def test_sessions_outside_the_range_are_left_out(run: Run) -> None:
    body = (await run.report(end="2021-01-01T00:00:00Z")).json()
    assert body["rows"] == []


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"groupBy": "country"}, 400, "groupBy"),
        ({"start": "yesterday"}, 400, "RFC 3339"),
        ({"start": "2026-01-01T00:00:00"}, 400, "offset"),
        ({"end": START}, 400, "end must be after start"),
        ({"format": "xml"}, 400, "format"),
    ],
)
async def test_bad_queries_get_a_400_that_says_why(
    run: Run, params: dict[str, str], status: int, says: str
) -> None:
    answer = await run.report(**params)
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]


async def test_the_report_needs_the_admin_token_and_a_known_project(run: Run) -> None:
    url = f"{run.relay.http_url}/v1/projects/default/usage/report"
    params = {"start": START, "end": END}
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(url, params=params)
        with_a_client_key = await http.get(url, params=params, headers=auth_headers())
        unknown = await http.get(
            f"{run.relay.http_url}/v1/projects/nobody/usage/report", params=params, headers=ADMIN
        )
    assert anonymous.status_code == 401
    assert with_a_client_key.status_code == 401
    assert unknown.status_code == 404


async def test_the_usage_command_prints_the_same_report(run: Run) -> None:
    endpoint = (await run.report(groupBy="user")).json()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env["RELAY_LEDGER_URL"] = run.ledger_url
    command = [sys.executable, "-m", "app", "usage", "--project", "default"]
    command += ["--start", START, "--end", END, "--group-by", "user"]
    printed = await _run(*command, "--format", "json", env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["rows"] == endpoint["rows"]
    table = await _run(*command, env=env)
    assert table.returncode == 0, table.stderr
    assert "alice" in table.stdout
    assert str(endpoint["rows"][0]["totalTokens"]) in table.stdout


async def _run(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )


async def one_priced_session(
    emulator: Emulator, tmp_path: Path, project: str, **settings: Any
) -> tuple[dict[str, int], dict[str, Any]]:
    """One text session through a relay with `settings` and a SQLite ledger: the tokens the
    upstream reported, and the project's usage report."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    store = open_ledger_store(url, timeout_seconds=5)
    try:
        async with running_relay(
            relay_settings(
                emulator,
                None,
                ledger_url=url,
                ledger_spool_dir=tmp_path / "spool",
                admin_token=ADMIN_TOKEN,
                **settings,
            )
        ) as relay:
            reports = await session(relay, auth_headers(), ["priced, please"])
            await final_records(store, project, 1)
            async with httpx.AsyncClient() as http:
                answer = await http.get(
                    f"{relay.http_url}/v1/projects/{project}/usage/report",
                    params={"start": START, "end": END},
                    headers=ADMIN,
                )
    finally:
        await store.aclose()
    body: dict[str, Any] = answer.json()
    return expected_tokens(reports), body


async def test_a_projects_own_prices_come_before_the_table(
    emulator: Emulator, tmp_path: Path
) -> None:
    projects = tmp_path / "projects.toml"
    projects.write_text(
        f'[projects.acme]\napi_keys = ["{hash_api_key(API_KEY)}"]\n\n'
        f'[projects.acme.prices."{MODEL}"]\n'
        "input = { TEXT = 100.0 }\noutput = { TEXT = 1000.0 }\n"
    )
    tokens, body = await one_priced_session(
        emulator, tmp_path, "acme", api_keys=(), projects_file=projects
    )
    [row] = body["rows"]
    expected = (tokens["prompt_text"] * 100.0 + tokens["response_text"] * 1000.0) / 1_000_000
    assert row["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert "acme" in body["prices"]["source"]


async def test_a_prices_file_replaces_the_built_in_table_in_reports(
    emulator: Emulator, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        'source = "our contract with Google"\nas_of = "2026-11-01"\n\n'
        f'[models."{MODEL}"]\ninput = {{ TEXT = 7.0 }}\noutput = {{ TEXT = 70.0 }}\n'
    )
    tokens, body = await one_priced_session(
        emulator, tmp_path, "default", ledger_prices_file=prices
    )
    [row] = body["rows"]
    expected = (tokens["prompt_text"] * 7.0 + tokens["response_text"] * 70.0) / 1_000_000
    assert row["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert body["prices"] == {"source": "our contract with Google", "asOf": "2026-11-01"}
