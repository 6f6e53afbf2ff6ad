"""The fast lane (app/relay/fast_lane.py) under `live-relay serve`: audio takes it both ways,
and frames that take it and frames that do not reach each side in the order they were sent."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from app.emulator.setup import ECHO_AUDIO_INSTRUCTION
from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.support.relay import RelayProcess

ECHO_SETUP = json.dumps(
    {
        "setup": {
            "model": MODEL,
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "systemInstruction": {"parts": [{"text": ECHO_AUDIO_INSTRUCTION}]},
        }
    }
)


def audio_frame(number: int) -> str:
    """40 ms of 16 kHz PCM whose first bytes carry `number`, so its echo can be told apart."""
    pcm = number.to_bytes(4, "big") + bytes(1276)
    data = base64.b64encode(pcm).decode()
    return json.dumps(
        {"realtimeInput": {"audio": {"data": data, "mimeType": "audio/pcm;rate=16000"}}}
    )


def echoed_number(frame: str | bytes) -> int | None:
    """The number of the audio chunk an echo answers; None for any other frame."""
    message = json.loads(frame)
    for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
        data = part.get("inlineData", {}).get("data")
        if data is not None:
            return int.from_bytes(base64.b64decode(data)[:4], "big")
    return None


async def next_echo(ws: ClientConnection) -> int:
    while True:
        number = echoed_number(await asyncio.wait_for(ws.recv(), timeout=10))
        if number is not None:
            return number


def ended_line(relay: RelayProcess) -> dict[str, object]:
    relay.wait_for_log('"session ended"')
    lines = [json.loads(line) for line in relay.output().splitlines() if line.startswith("{")]
    (ended,) = [line for line in lines if line.get("msg") == "session ended"]
    assert isinstance(ended, dict)
    return ended


async def test_audio_takes_the_fast_lane_both_ways(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY}, tmp_path / "relay.log"
    )
    try:
        async with connect(relay.url(), additional_headers=auth_headers()) as ws:
            await ws.send(ECHO_SETUP)
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            for number in range(50):
                await ws.send(audio_frame(number))
                assert await next_echo(ws) == number
        ended = ended_line(relay)
    finally:
        relay.kill()
    assert ended["frames_in"] == 51  # the setup, then the audio
    # One at a time, each after its echo: every chunk finds its pump waiting, and so does
    # every echo.
    assert ended["fast_frames_in"] == 50
    assert ended["fast_frames_out"] == 50


async def test_frames_keep_their_order_across_both_paths(tmp_path: Path) -> None:
    """The setup and 150 chunks sent at once (under the default 200 frames/s): the first wait
    for setupComplete, the next queue behind them on the generic path, the rest take the fast
    lane; the echoes come back in order, and all of them."""
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY}, tmp_path / "relay.log"
    )
    count = 150
    try:
        async with connect(relay.url(), additional_headers=auth_headers()) as ws:
            await ws.send(ECHO_SETUP)
            for number in range(count):
                await ws.send(audio_frame(number))
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            echoes = [await next_echo(ws) for _ in range(count)]
        ended = ended_line(relay)
    finally:
        relay.kill()
    assert echoes == list(range(count))
    assert ended["frames_in"] == count + 1
    fast_in = ended["fast_frames_in"]
    assert isinstance(fast_in, int)
    assert 0 < fast_in < count  # some waited for setupComplete, the rest did not
