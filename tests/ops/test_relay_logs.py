"""The logs of a real `live-relay serve`: one session, keys in query strings, nothing leaked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.relay import RelayProcess

API_KEY = "lr_ops_" + "q" * 40
WRONG_KEY = "lr_ops_" + "w" * 40
USER_IN_URL = "SECRET-USER-ID"
MODEL = "gemini-live-2.5-flash"


async def one_session_and_one_refusal(relay: RelayProcess) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(f"{relay.url()}?key={WRONG_KEY}"):
            pass
    async with connect(f"{relay.url()}?key={API_KEY}&user={USER_IN_URL}") as websocket:
        await websocket.send(json.dumps({"setup": {"model": MODEL}}))
        reply = json.loads(await asyncio.wait_for(websocket.recv(), timeout=10))
        assert "setupComplete" in reply
    async with httpx.AsyncClient() as http:
        await http.get(f"http://127.0.0.1:{relay.port}/healthz?access_token={API_KEY}")


def session_lines(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in entries if entry["msg"] in ("session started", "session ended")]


async def test_relay_logs_a_session_in_two_json_lines_without_any_key(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY}, tmp_path / "relay.log"
    )
    try:
        await one_session_and_one_refusal(relay)
        relay.wait_for_log('"session ended"')
    finally:
        relay.terminate()
        relay.wait()
        output = relay.output()
        relay.kill()
    for secret in (API_KEY, WRONG_KEY, USER_IN_URL):
        assert secret not in output
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    started, ended = session_lines(entries)
    assert (started["msg"], ended["msg"]) == ("session started", "session ended")
    assert isinstance(started["session"], str)
    assert started["session"] == ended["session"]
    assert ended["project"] == started["project"]
    assert isinstance(ended["frames_in"], int)
    assert isinstance(ended["bytes_out"], int)
    assert started["user"] is None  # an API key names no user
