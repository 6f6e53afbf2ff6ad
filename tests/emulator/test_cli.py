"""`live-relay emulator` as a process: it serves, prints its URL and exits 0 on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect

from app.emulator import EmulatorConfig
from app.emulator.cli import config_from, configure
from tests.emulator.support import VERTEX_PATH, raw_setup, setup_complete_session_id
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


async def test_the_command_serves_until_sigterm_then_exits_zero() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "app.emulator", "--port", str(port), "--require-token", "tok"),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.decode().strip() == f"live-relay emulator listening on ws://127.0.0.1:{port}"
        async with connect(
            f"ws://127.0.0.1:{port}{VERTEX_PATH}",
            additional_headers={"Authorization": "Bearer tok"},
        ) as ws:
            await ws.send(raw_setup())
            setup_complete_session_id(json.loads(await ws.recv()))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_command_line_reaches_every_choice_the_fidelity_page_offers() -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    defaults = config_from(parser.parse_args([]))
    chosen = config_from(
        parser.parse_args(
            [
                "--resume-while-open=refuse",
                "--consumed-index-counting=per_session",
                "--audio-stream-end=accept",
                "--audio-session-cap=0",
                "--video-session-cap=30",
                "--goaway-notice=5",
                "--deadline-close=0",
                "--resume-after-deadline=refuse",
                "--search-with-function-calling=allow",
            ]
        )
    )

    assert defaults == EmulatorConfig()
    assert (
        chosen.resume_while_open,
        chosen.consumed_index_counting,
        chosen.audio_stream_end,
        chosen.audio_session_cap_seconds,
        chosen.video_session_cap_seconds,
        chosen.goaway_notice_seconds,
        chosen.deadline_close_seconds,
        chosen.resume_after_deadline,
        chosen.search_with_function_calling,
    ) == ("refuse", "per_session", "accept", None, 30.0, 5.0, None, "refuse", "allow")
