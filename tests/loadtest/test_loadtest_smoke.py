"""`live-relay loadtest` run for real, as a subprocess, against a live endpoint for a few seconds.

Targets come from `conftest.py`: the emulator hit directly, and the relay in front of it as
deployed (wss://, API key, quotas in Redis, metrics).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.loadtest.conftest import VERTEX_PATH, Target, run_loadtest

SESSIONS = 5
DURATION_SECONDS = 3


async def test_loadtest_reports_sane_figures_and_no_errors(target: Target) -> None:
    status, stdout, stderr = await run_loadtest(
        target.url,
        *target.options,
        f"--sessions={SESSIONS}",
        f"--duration={DURATION_SECONDS}",
        "--ramp-up=0.5",
        "--json",
    )
    assert status == 0, stdout + stderr
    report: dict[str, Any] = json.loads(stdout)
    frames = report["frames"]
    latency = report["latency_ms"]

    assert report["errors"] == {"total": 0, "by_kind": {}}
    assert report["sessions"] == {"requested": SESSIONS, "opened": SESSIONS}
    assert report["close_codes"] == {"1000": SESSIONS}
    assert frames["offered_per_second"] == SESSIONS * 25  # 40 ms chunks
    assert frames["sent_per_second"] == pytest.approx(frames["offered_per_second"], rel=0.1)
    assert frames["answered"] == frames["sent"]
    assert frames["lost"] == 0
    assert frames["other"] == 0
    assert latency["count"] == frames["answered"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 1000
    assert 0 < report["setup_ms"]["p50"] < 1000
    assert report["window"]["seconds"] == pytest.approx(DURATION_SECONDS, abs=0.2)
    assert "measuring" in stderr  # progress was shown while it ran


async def short_run(url: str, *options: str) -> tuple[dict[str, Any], str]:
    """Two sessions for 1.5 s, quietly: the JSON report, and what went to stderr."""
    status, stdout, stderr = await run_loadtest(
        url, *options, "--sessions=2", "--duration=1.5", "--ramp-up=0", "--json", "--quiet"
    )
    assert status == 0, stdout + stderr
    report: dict[str, Any] = json.loads(stdout)
    return report, stderr


async def test_loadtest_text_mode_times_whole_turns(emulator_target: Target) -> None:
    report, stderr = await short_run(emulator_target.url, "--text", "--turn-interval=0.5")
    assert report["mode"] == "text"
    assert report["errors"]["total"] == 0
    assert report["frames"]["answered"] == report["frames"]["sent"] >= 4
    assert report["frames"]["other"] > 0  # the reply's parts before its turnComplete
    assert report["latency_ms"]["p50"] > 0
    assert stderr == ""


async def test_loadtest_can_ask_for_resumption_as_a_long_lived_sdk_session(
    relay_target: Target,
) -> None:
    report, _ = await short_run(relay_target.url, *relay_target.options, "--resumption")
    assert report["errors"]["total"] == 0
    assert report["frames"]["lost"] == 0
    # The handle updates the relay sends a client that asked (none come without the flag:
    # the sane-figures test above counts no other frame).
    assert report["frames"]["other"] > 0


@pytest.mark.parametrize(
    ("auth_failure", "error"),
    [
        ("reject", "refused: HTTP 401"),
        ("close", "closed during setup: 1008 Request had invalid authentication credentials."),
    ],
)
async def test_loadtest_counts_refused_sessions_and_fails(
    auth_failure: Literal["reject", "close"], error: str
) -> None:
    config = EmulatorConfig(
        echo_audio=True, require_token="the-right-key", auth_failure=auth_failure
    )
    async with Emulator(config) as emulator:
        status, stdout, _ = await run_loadtest(
            emulator.base_url + VERTEX_PATH,
            "--api-key=a-wrong-key",
            "--sessions=3",
            "--duration=0.2",
            "--ramp-up=0",
            "--json",
            "--quiet",
        )
    assert status == 1
    report = json.loads(stdout)
    assert report["sessions"]["opened"] == 0
    assert report["errors"] == {"total": 3, "by_kind": {error: 3}}
    assert "a-wrong-key" not in stdout


async def test_loadtest_rejects_a_url_that_is_not_a_websocket() -> None:
    status, stdout, stderr = await run_loadtest("http://127.0.0.1:1/v1/live", "--quiet")
    assert status == 2
    assert stdout == ""
    assert "ws:// or wss://" in stderr
