"""The database goes away and comes back; a replica is SIGKILLed: usage is neither lost nor
counted twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from app.emulator import Emulator
from app.ledger.record import SessionRecord
from app.ledger.spool import SPOOL_GLOB, Spool
from app.ledger.store import ReportQuery, open_ledger_store
from app.ledger.usage import TOKEN_COLUMNS
from tests.ledger.support import (
    expected_tokens,
    final_records,
    nonzero,
    open_session,
    session,
    turn,
)
from tests.relay.conftest import API_KEY, auth_headers, relay_settings
from tests.support.relay import RelayProcess, running_relay
from tests.support.scrape import scrape, value
from tests.support.tcp_proxy import TcpProxy


def _through(proxy: TcpProxy, url: str) -> str:
    """`url` (a database on 127.0.0.1:5432) reached through `proxy`."""
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def _multiset(counters: list[Counter[str]]) -> list[list[tuple[str, int]]]:
    return sorted(sorted(counter.items()) for counter in counters)


async def test_a_database_restart_under_load_loses_and_doubles_nothing(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    spool_dir = tmp_path / "spool"
    settings = relay_settings(
        emulator,
        None,
        ledger_url=_through(proxy, postgres_url),
        ledger_spool_dir=spool_dir,
        ledger_checkpoint_seconds=0.1,
        ledger_retry_seconds=0.2,
        ledger_timeout_seconds=2,
    )
    direct = open_ledger_store(postgres_url, timeout_seconds=5)
    expected: list[Counter[str]] = []
    try:
        async with running_relay(settings) as relay:
            expected.append(expected_tokens(await session(relay, auth_headers(), ["before"])))
            await final_records(direct, "default", 1)
            # A session runs across the outage: its checkpoints fail, then go through.
            across = await open_session(relay.url, auth_headers())
            reports = [await turn(across, "while the database is up")]
            await proxy.stop()
            for text in ("during one", "during two", "during three"):
                expected.append(expected_tokens(await session(relay, auth_headers(), [text])))
            reports.append(await turn(across, "while the database is down"))
            await asyncio.sleep(0.5)  # checkpoints and finals meet a dead database
            spooled = value(
                await scrape(f"{relay.http_url}/metrics"), "relay_ledger_records_spooled_total"
            )
            assert spooled >= 3  # at least the three final records
            assert list(spool_dir.glob(SPOOL_GLOB))
            await proxy.start()
            reports.append(await turn(across, "after the database is back"))
            await across.close()
            expected.append(expected_tokens(reports))
            records = await final_records(direct, "default", 5)
            samples = await scrape(f"{relay.http_url}/metrics")
    finally:
        await proxy.stop()
        await direct.aclose()
    assert len(records) == 5
    assert all(record.final for record in records)
    assert _multiset([nonzero(record.tokens) for record in records]) == _multiset(expected)
    assert value(samples, "relay_ledger_records_lost_total", reason="spool_full") == 0
    # The spool was replayed and emptied (its file is gone once the writer closed).
    assert not any(path.read_text() for path in spool_dir.glob(SPOOL_GLOB))


def _record(session_id: str, version: int, final: bool, prompt: int) -> SessionRecord:
    tokens = dict.fromkeys(TOKEN_COLUMNS, 0) | {
        "prompt_tokens": prompt,
        "prompt_text": prompt,
        "total_tokens": prompt,
    }
    return SessionRecord(
        session_id=session_id,
        version=version,
        final=final,
        project="default",
        user_id=None,
        credential="api_key:test",
        auth_method="api_key",
        model="gemini-live-2.5-flash",
        started_at=1_800_000_000.0,
        ended_at=1_800_000_060.0 if final else None,
        duration_seconds=60.0,
        upstream_switches=0,
        close_code=1000 if final else None,
        closed_by="client" if final else None,
        outcome="client_closed" if final else None,
        usage_reports=version,
        tokens=tokens,
        recorded_at=1_800_000_060.0,
    )


async def test_a_dead_process_spool_is_replayed_by_the_next_one_highest_version_winning(
    emulator: Emulator, ledger_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    left_behind = Spool(spool_dir, max_bytes=1 << 20)
    # Out of order, as a spool can hold them: the final record, then an older checkpoint.
    left_behind.append([_record("s1", 1, False, 10), _record("s1", 3, True, 30)])
    left_behind.append([_record("s1", 2, False, 20), _record("s2", 1, True, 5)])
    path = next(spool_dir.glob(SPOOL_GLOB))
    left_behind.close()  # a process that stops with records spooled keeps its file
    with path.open("a") as torn:
        torn.write(json.dumps(_record("s3", 1, True, 7).to_json())[:40])  # cut by a crash
    settings = relay_settings(
        emulator, None, ledger_url=ledger_url, ledger_spool_dir=spool_dir, ledger_retry_seconds=0.1
    )
    store = open_ledger_store(ledger_url, timeout_seconds=5)
    try:
        async with running_relay(settings):
            records = await final_records(store, "default", 2)
            await asyncio.sleep(0.3)  # a second replay, if one happened, would show below
            records = await store.records("default", 0, 4e9)
    finally:
        await store.aclose()
    by_id = {record.session_id: record for record in records}
    assert set(by_id) == {"s1", "s2"}  # the torn line was never acknowledged: skipped
    assert by_id["s1"].version == 3
    assert by_id["s1"].tokens is not None
    assert by_id["s1"].tokens["prompt_tokens"] == 30
    assert not path.exists()


async def test_a_replica_killed_mid_session_keeps_its_last_checkpoint(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    checkpoint_seconds = 0.2
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": emulator.base_url,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_LEDGER_URL": postgres_url,
            "RELAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
            "RELAY_LEDGER_CHECKPOINT_SECONDS": str(checkpoint_seconds),
        },
        tmp_path / "relay.log",
    )
    store = open_ledger_store(postgres_url, timeout_seconds=5)
    try:
        relay.wait_for_log("relay ready", timeout=30)
        ws = await open_session(relay.url(), auth_headers())
        reports = [await turn(ws, "first"), await turn(ws, "second")]
        # Two checkpoint intervals: what came before the last one is all that may be lost.
        await asyncio.sleep(2 * checkpoint_seconds + 0.2)
        relay.kill()
        [record] = await store.records("default", 0, 4e9)
    finally:
        relay.kill()
        await store.aclose()
    assert not record.final
    assert nonzero(record.tokens) == expected_tokens(reports)


async def test_replicas_write_one_ledger_whose_report_sums_every_replica(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    env = {
        "RELAY_UPSTREAM": "emulator",
        "RELAY_EMULATOR_URL": emulator.base_url,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_LEDGER_URL": postgres_url,
        "RELAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
    }
    replicas = [RelayProcess(env, tmp_path / f"relay-{index}.log") for index in range(2)]
    store = open_ledger_store(postgres_url, timeout_seconds=5)
    expected: Counter[str] = Counter()
    try:
        for replica in replicas:
            replica.wait_for_log("relay ready", timeout=30)
        for number, replica in enumerate([*replicas, *replicas]):
            ws = await open_session(replica.url(), auth_headers())
            reports = [await turn(ws, f"session {number}")]
            await ws.close()
            expected.update(expected_tokens(reports))
        records = await final_records(store, "default", 4)
        sums = await store.report_sums(ReportQuery("default", 0, 4e9, ()))
    finally:
        for replica in replicas:
            replica.kill()
        await store.aclose()
    assert len(records) == 4
    [row] = sums
    assert int(row["sessions"]) == 4
    assert {name: int(row[name]) for name in expected} == dict(expected)
