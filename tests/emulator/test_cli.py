"""`live-relay emulator` as a process: it serves, prints its URL and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect

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
