"""Every session that reaches the upstream leaves one record equal to what the upstream
reported, in SQLite and in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth.keys import hash_api_key
from app.emulator import Emulator, EmulatorConfig
from app.ledger.store import LedgerStore, open_ledger_store
from tests.ledger.support import (
    expected_tokens,
    final_records,
    nonzero,
    open_session,
    records_now,
    session,
    turn,
)
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.support.relay import running_relay
from tests.support.scrape import scrape, value


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store(ledger_url, timeout_seconds=5)
    try:
        yield opened
    finally:
        await opened.aclose()


def ledger_settings(emulator: Emulator, ledger_url: str, tmp_path: Path, **overrides: Any) -> Any:
    return relay_settings(
        emulator,
        None,
        ledger_url=ledger_url,
        ledger_spool_dir=tmp_path / "spool",
        ledger_retry_seconds=0.2,
        **overrides,
    )


async def test_records_equal_the_usage_the_upstream_reported_per_kind_and_modality(
    emulator: Emulator, ledger_url: str, store: LedgerStore, tmp_path: Path
) -> None:
    async with running_relay(ledger_settings(emulator, ledger_url, tmp_path)) as relay:
        text = await session(relay, auth_headers(), ["hello there", "and how are you today?"])
        audio = await session(relay, auth_headers(), ["say something"], modality="AUDIO")
        records = await final_records(store, "default", 2)
    assert len(records) == 2
    by_reports = {record.usage_reports: record for record in records}
    assert set(by_reports) == {2, 1}
    for record, reports in ((by_reports[2], text), (by_reports[1], audio)):
        assert nonzero(record.tokens) == expected_tokens(reports)
        assert record.final
        assert record.version >= 1
        assert record.project == "default"
        assert record.user_id is None  # API keys have no user
        assert record.credential == f"api_key:{hash_api_key(API_KEY)}"
        assert record.auth_method == "api_key"
        assert record.model == MODEL
        assert (record.close_code, record.closed_by, record.outcome) == (
            1000,
            "client",
            "client_closed",
        )
        assert record.ended_at is not None
        assert record.duration_seconds == pytest.approx(record.ended_at - record.started_at)
        assert record.upstream_switches == 0
    # The audio reply is billed as AUDIO output, the text replies as TEXT.
    assert by_reports[1].tokens is not None
    assert by_reports[1].tokens["response_audio"] > 0
    assert by_reports[2].tokens is not None
    assert by_reports[2].tokens["response_text"] > 0


async def test_a_session_without_usage_says_so_instead_of_zeros(
    emulator: Emulator, ledger_url: str, store: LedgerStore, tmp_path: Path
) -> None:
    async with running_relay(ledger_settings(emulator, ledger_url, tmp_path)) as relay:
        ws = await open_session(relay.url, auth_headers())
        await ws.close()
        [record] = await final_records(store, "default", 1)
    assert record.usage_reports == 0
    assert record.tokens is None


async def test_checkpoints_carry_running_usage_and_the_final_record_replaces_them(
    emulator: Emulator, ledger_url: str, store: LedgerStore, tmp_path: Path
) -> None:
    settings = ledger_settings(emulator, ledger_url, tmp_path, ledger_checkpoint_seconds=0.1)
    async with running_relay(settings) as relay:
        ws = await open_session(relay.url, auth_headers())
        first = await turn(ws, "one turn before the checkpoint")
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            records = await records_now(store, "default")
            if records and records[0].usage_reports == 1:
                break
            assert asyncio.get_running_loop().time() < deadline, records
            await asyncio.sleep(0.05)
        [checkpoint] = records
        assert not checkpoint.final
        assert checkpoint.ended_at is None
        assert nonzero(checkpoint.tokens) == expected_tokens([first])
        second = await turn(ws, "and one after it")
        await ws.close()
        [final] = await final_records(store, "default", 1)
    assert final.session_id == checkpoint.session_id
    assert final.version > checkpoint.version
    assert nonzero(final.tokens) == expected_tokens([first, second])  # not added twice


async def test_a_session_token_records_its_user_and_token_id(
    emulator: Emulator, ledger_url: str, store: LedgerStore, tmp_path: Path
) -> None:
    async with running_relay(ledger_settings(emulator, ledger_url, tmp_path)) as relay:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{relay.http_url}/v1/tokens", json={"user": "alice"}, headers=auth_headers()
            )
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        await session(relay, {"Authorization": f"Bearer {token}"}, ["hi"])
        [record] = await final_records(store, "default", 1)
    assert record.user_id == "alice"
    assert record.auth_method == "session_token"
    assert record.credential.startswith("session_token:")
    assert token not in record.credential  # the token's id, never the token


async def test_prometheus_counts_tokens_by_project_model_kind_and_modality(
    emulator: Emulator, ledger_url: str, store: LedgerStore, tmp_path: Path
) -> None:
    async with running_relay(ledger_settings(emulator, ledger_url, tmp_path)) as relay:
        reports = await session(relay, auth_headers(), ["count me", "and me"])
        await final_records(store, "default", 1)
        samples = await scrape(f"{relay.http_url}/metrics")
    expected = expected_tokens(reports)
    for kind in ("prompt", "response"):
        counted = value(
            samples,
            "relay_usage_tokens_total",
            project="default",
            model=MODEL,
            kind=kind,
            modality="TEXT",
        )
        assert counted == expected[f"{kind}_text"] > 0
    assert value(samples, "relay_ledger_records_written_total") >= 1
    assert value(samples, "relay_ledger_records_spooled_total") == 0


async def test_a_session_across_upstream_switches_is_one_record_with_every_report(
    tmp_path: Path,
) -> None:
    short_lived = EmulatorConfig(connection_lifetime_seconds=1.5, goaway_notice_seconds=0.5)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    store = open_ledger_store(url, timeout_seconds=5)
    try:
        async with Emulator(short_lived) as emulator:
            settings = ledger_settings(emulator, url, tmp_path)
            async with running_relay(settings) as relay:
                ws = await open_session(relay.url, auth_headers())
                reports = []
                for number in range(4):  # about 4 s: the upstream connection is replaced
                    reports.append(await turn(ws, f"turn {number}"))
                    await asyncio.sleep(0.9)
                await ws.close()
                [record] = await final_records(store, "default", 1)
                switched = sum(
                    sample.value
                    for metric in relay.state.metrics.upstream_switches_total.collect()
                    for sample in metric.samples
                    if sample.name.endswith("_total")
                )
    finally:
        await store.aclose()
    assert record.upstream_switches == switched >= 1
    assert record.usage_reports == len(reports)
    assert nonzero(record.tokens) == expected_tokens(reports)
