"""`live-relay loadtest --storm`: sessions opened all at once while others stream, for real.

Targets (the emulator directly, the relay as deployed) and the runner come from `conftest.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.loadtest.conftest import VERTEX_PATH, Target, run_loadtest
from tests.relay.conftest import API_KEY, MODEL, relay_settings
from tests.support.redis_server import RedisServer
from tests.support.relay import running_relay
from tests.support.tls import TLSFiles

STREAMING = 2
STORM = 6  # with the streaming ones, within the relay's default 10 sessions per project


async def test_storm_opens_every_session_and_reports_its_cost(target: Target) -> None:
    status, stdout, stderr = await run_loadtest(
        target.url,
        *target.options,
        f"--sessions={STREAMING}",
        f"--storm={STORM}",
        "--storm-at=0.5",
        "--duration=2",
        "--ramp-up=0",
        "--json",
        "--quiet",
    )
    assert status == 0, stdout + stderr
    report: dict[str, Any] = json.loads(stdout)
    storm = report["storm"]

    assert report["errors"] == {"total": 0, "by_kind": {}}
    assert report["sessions"] == {"requested": STREAMING, "opened": STREAMING}
    assert report["close_codes"] == {"1000": STREAMING + STORM}
    assert (storm["requested"], storm["opened"], storm["failed"]) == (STORM, STORM, 0)
    assert storm["setup_ms"]["count"] == storm["connect_ms"]["count"] == STORM
    assert 0 < storm["connect_ms"]["p50"] <= storm["setup_ms"]["p50"] <= storm["setup_ms"]["max"]
    # Both are rounded in the report (ms to 3 decimals, seconds to 3): a millisecond of slack.
    assert storm["setup_ms"]["max"] <= 1000 * storm["seconds"] + 1
    assert storm["admissions_per_second"] == pytest.approx(STORM / storm["seconds"], rel=0.01)
    assert storm["started_at"] < storm["ended_at"]
    assert storm["streaming_before_ms"]["count"] > 0  # half a second of two streaming sessions
    # Every frame measured was sent before, during or after the storm: none counted twice.
    assert (
        storm["streaming_before_ms"]["count"] + storm["streaming_during_ms"]["count"]
        <= (report["latency_ms"]["count"])
    )
    # Storm sessions only hold their session: the frames are the streaming sessions'.
    assert report["frames"]["offered_per_second"] == STREAMING * 25


async def test_storm_counts_the_sessions_the_quota_refuses(
    tls_files: TLSFiles, redis_server: RedisServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY)
    async with Emulator(EmulatorConfig(echo_audio=True)) as emulator:
        settings = relay_settings(
            emulator, tls_files, redis_url=redis_server.url, default_max_sessions=4
        )
        async with running_relay(settings) as relay:
            status, stdout, _ = await run_loadtest(
                relay.url,
                *("--model", MODEL, "--api-key-file", str(key_file)),
                *("--ca-file", str(tls_files.ca_file)),
                "--sessions=1",
                "--storm=5",
                "--storm-at=0.2",
                "--duration=1",
                "--ramp-up=0",
                "--json",
                "--quiet",
            )
    assert status == 1  # refusals are errors: the run did not get what it asked for
    report = json.loads(stdout)
    storm = report["storm"]
    assert (storm["opened"], storm["failed"]) == (3, 2)
    (kind,) = report["errors"]["by_kind"]
    assert kind.startswith("storm: closed during setup: 1013 ")
    assert report["errors"]["total"] == 2
    assert report["sessions"]["opened"] == 1


async def test_storm_at_must_fall_inside_the_window() -> None:
    async with Emulator(EmulatorConfig(echo_audio=True)) as emulator:
        status, stdout, stderr = await run_loadtest(
            emulator.base_url + VERTEX_PATH, "--storm=2", "--storm-at=5", "--duration=1"
        )
    assert status == 2
    assert stdout == ""
    assert "storm must start within the window" in stderr


async def test_storm_sessions_refused_at_the_handshake_are_storm_errors() -> None:
    config = EmulatorConfig(echo_audio=True, require_token="the-right-key", auth_failure="reject")
    async with Emulator(config) as emulator:
        status, stdout, _ = await run_loadtest(
            emulator.base_url + VERTEX_PATH,
            "--api-key=a-wrong-key",
            "--sessions=1",
            "--storm=3",
            "--storm-at=0",
            "--duration=0.5",
            "--ramp-up=0",
            "--json",
            "--quiet",
        )
    assert status == 1
    report = json.loads(stdout)
    assert report["errors"]["by_kind"] == {
        "refused: HTTP 401": 1,
        "storm: refused: HTTP 401": 3,
    }
    storm = report["storm"]
    assert (storm["opened"], storm["failed"], storm["admissions_per_second"]) == (0, 3, 0.0)
    assert storm["setup_ms"]["count"] == 0
    assert "a-wrong-key" not in stdout
