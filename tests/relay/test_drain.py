"""SIGTERM to a real `live-relay serve`: goAway to live sessions, then 1001, then exit 0."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

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
