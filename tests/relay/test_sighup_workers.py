"""SIGHUP to `live-relay serve --workers 2`: every worker re-reads the projects file, and no
session is dropped (uvicorn's own supervisor would have replaced the workers)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from app.auth.keys import hash_api_key
from tests.relay.conftest import MODEL
from tests.relay.test_operations import one_turn, session_lines
from tests.support.relay import RelayProcess

FIRST_KEY = "lr_first_" + "f" * 40
SECOND_KEY = "lr_second_" + "s" * 40


def projects_with(key: str) -> str:
    return f'[projects.acme]\napi_keys = ["{hash_api_key(key)}"]\n'


async def open_session(relay: RelayProcess, key: str) -> ClientConnection:
    ws = await connect(relay.url(), additional_headers={"x-goog-api-key": key})
    setup = {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
    await ws.send(json.dumps({"setup": setup}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    return ws


def worker_pids(relay: RelayProcess) -> set[object]:
    return {line["pid"] for line in session_lines(relay) if line["msg"] == "session started"}


async def test_sighup_reloads_the_projects_file_in_every_worker_without_dropping_sessions(
    tmp_path: Path,
) -> None:
    projects = tmp_path / "projects.toml"
    projects.write_text(projects_with(FIRST_KEY))
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_PROJECTS_FILE": str(projects),
            "RELAY_WORKERS": "2",
            "RELAY_DEFAULT_MAX_SESSIONS": "100",
        },
        tmp_path / "relay.log",
    )
    try:
        await relay.until_workers_ready(2)
        # Sessions on both workers: the kernel picks one per connection, so open them in bursts.
        live: list[ClientConnection] = []
        for _ in range(8):
            live += await asyncio.gather(*(open_session(relay, FIRST_KEY) for _ in range(8)))
            if len(worker_pids(relay)) == 2:
                break
        workers = worker_pids(relay)
        assert len(workers) == 2

        projects.write_text(projects_with(SECOND_KEY))
        relay.process.send_signal(signal.SIGHUP)
        for _ in range(200):
            if relay.output().count('"reloaded 1 projects from') == 2:
                break
            await asyncio.sleep(0.05)
        assert relay.output().count('"reloaded 1 projects from') == 2, relay.output()

        # Whichever worker takes them, new connections see the new file.
        fresh = await asyncio.gather(*(open_session(relay, SECOND_KEY) for _ in range(16)))
        assert worker_pids(relay) == workers  # the same two workers: none was replaced
        with pytest.raises(InvalidStatus) as refused:
            await connect(relay.url(), additional_headers={"x-goog-api-key": FIRST_KEY})
        assert refused.value.response.status_code == 401
        # Every session from before the reload still runs on the worker it started on.
        for ws in live:
            assert await one_turn(ws, "still here after the reload") >= 1
        for ws in [*live, *fresh]:
            await ws.close()
        assert relay.process.poll() is None
    finally:
        relay.kill()
    ended = [line for line in session_lines(relay) if line["msg"] == "session ended"]
    assert {line["outcome"] for line in ended} <= {"client_closed"}
