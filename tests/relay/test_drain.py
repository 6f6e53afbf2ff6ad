"""SIGTERM to a real `live-relay serve`: goAway to live sessions, then 1001, then exit 0."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from types import FrameType

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.logs import session_id_var
from app.relay.session.drain import install_drain_on_sigterm
from app.relay.session.registry import LiveSessions
from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.relay.test_setup_and_closes import close_of
from tests.support.relay import RelayProcess


async def test_sigterm_drains_sessions_then_exits_zero(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY, "RELAY_DRAIN_SECONDS": "1.5"},
        tmp_path / "relay.log",
    )
    try:
        clients = []
        for _ in range(2):
            ws = await connect(relay.url(), additional_headers=auth_headers())
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            clients.append(ws)

        relay.terminate()
        for ws in clients:
            goaway = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            assert goaway == {"goAway": {"timeLeft": "1.5s"}}

        # Draining: readiness fails and new sessions are turned away, live ones keep going.
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{relay.port}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["draining"] == "yes"
        with pytest.raises(InvalidStatus) as refused:
            await connect(relay.url(), additional_headers=auth_headers())
        assert refused.value.response.status_code == 503

        # One client leaves on its own after the goAway; the other is closed at the deadline.
        await clients[0].close()
        code, reason = await close_of(clients[1])
        assert (code, reason) == (1001, "server shutting down")
        exit_code = await asyncio.to_thread(relay.wait, 15)
        assert exit_code == 0, relay.output()
    finally:
        relay.kill()


async def test_the_drain_logs_outside_the_session_a_sigterm_interrupted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A signal handler runs inside whatever the main thread runs, often a session's task:
    the drain must not log its lines as that session's."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    seen: list[str | None] = []

    def uvicorns_handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stopped.set)

    def note_session(record: logging.LogRecord) -> bool:
        seen.append(session_id_var.get())
        return True

    caplog.set_level(logging.INFO, logger="app.relay.session.registry")
    drain_logger = logging.getLogger("app.relay.session.registry")
    previous = signal.signal(signal.SIGTERM, uvicorns_handler)
    drain_logger.addFilter(note_session)
    try:
        install_drain_on_sigterm(LiveSessions(), drain_seconds=0)
        session = session_id_var.set("0123456789abcdef")
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            session_id_var.reset(session)
        await asyncio.wait_for(stopped.wait(), timeout=5)
    finally:
        drain_logger.removeFilter(note_session)
        signal.signal(signal.SIGTERM, previous)
    assert seen == [None]
