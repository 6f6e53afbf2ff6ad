"""The fast lane (app/relay/fast_lane.py): audio takes it both ways under `live-relay serve`,
and frames that take it and frames that do not reach each side in the order they were sent."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator, EmulatorConfig, Faults
from app.emulator.setup import ECHO_AUDIO_INSTRUCTION
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.support.relay import RelayProcess, running_relay
from tests.support.wait import eventually

_ECHO = {
    "model": MODEL,
    "generationConfig": {"responseModalities": ["AUDIO"]},
    "systemInstruction": {"parts": [{"text": ECHO_AUDIO_INSTRUCTION}]},
}
ECHO_SETUP = json.dumps({"setup": _ECHO})
# The same, with the client's own resumption (sessionResumptionUpdates come to it).
RESUMING_ECHO_SETUP = json.dumps({"setup": {**_ECHO, "sessionResumption": {}}})


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


async def next_echo(ws: ClientConnection, handles: list[str] | None = None) -> int:
    """The number of the next echo; the handles of resumption updates before it go to
    `handles`."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), timeout=10)
        number = echoed_number(frame)
        if number is not None:
            return number
        update = json.loads(frame).get("sessionResumptionUpdate")
        if update is not None and handles is not None:
            handles.append(update.get("newHandle", ""))


GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.mark.parametrize(
    ("setup", "env", "path"),
    [
        (ECHO_SETUP, {}, None),
        # The client's own resumption: its updates carry the relay's sealed handles, which
        # take the generic path; the audio around them must not.
        (RESUMING_ECHO_SETUP, {}, None),
        (ECHO_SETUP, {"RELAY_RESUMPTION_ENABLED": "false"}, None),
        (RESUMING_ECHO_SETUP, {"RELAY_RESUMPTION_ENABLED": "false"}, None),
        # Each leg wrapper keeps the lane: the Gemini API dialect (the @google/genai SDK in
        # Gemini API mode), estimated usage.
        (json.dumps({"setup": {**_ECHO, "model": f"models/{MODEL}"}}), {}, GEMINI_PATH),
        (ECHO_SETUP, {"RELAY_ESTIMATED_USAGE_MODELS": MODEL}, None),
    ],
    ids=[
        "default",
        "client_resumes",
        "relay_resumption_off",
        "relay_off_client_resumes",
        "gemini_dialect",
        "estimated_usage",
    ],
)
async def test_audio_takes_the_fast_lane_both_ways(
    tmp_path: Path, setup: str, env: dict[str, str], path: str | None
) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY, **env}, tmp_path / "relay.log"
    )
    url = relay.url() if path is None else relay.url().replace("/v1/live", path)
    handles: list[str] = []  # the newHandle of every sessionResumptionUpdate the client got
    try:
        async with connect(url, additional_headers=auth_headers()) as ws:
            await ws.send(setup)
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            for number in range(50):
                await ws.send(audio_frame(number))
                assert await next_echo(ws, handles) == number
        ended = relay.session_ended()
    finally:
        relay.kill()
    assert ended["frames_in"] == 51  # the setup, then the audio
    # One at a time, each after its echo: every chunk finds its pump waiting, and so does
    # every echo, but for one that came while an update was on the generic path.
    assert ended["fast_frames_in"] == 50
    fast_out = ended["fast_frames_out"]
    assert isinstance(fast_out, int)
    assert fast_out >= 50 - len(handles)
    if setup == RESUMING_ECHO_SETUP:
        assert handles, "the emulator sends updates to a client that asks for them"
        # Sealed, on whichever path: never the upstream's own handle.
        assert all(handle.startswith("lrh1.") for handle in handles if handle)
    else:
        assert handles == []


async def test_frames_keep_their_order_across_both_paths(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """50 chunks sent behind the setup while the upstream holds setupComplete back for a
    second: they wait on the pumps' path. 100 more, sent at once after it: they take the fast
    lane as it opens, behind the held ones. Every echo comes back, in order."""
    caplog.set_level(logging.INFO, logger="app.relay.endpoint")
    held, then = 50, 100
    slow_setup = EmulatorConfig(echo_audio=True, faults=Faults(setup_delay_seconds=1.0))
    async with (
        Emulator(slow_setup) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        async with connect(relay.url, additional_headers=auth_headers()) as ws:
            await ws.send(ECHO_SETUP)
            for number in range(held):
                await ws.send(audio_frame(number))
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            for number in range(held, held + then):
                await ws.send(audio_frame(number))
            echoes = [await next_echo(ws) for _ in range(held + then)]
        await eventually(lambda: _logged(caplog, "session ended"), within=10)
    (record,) = [record for record in caplog.records if record.getMessage() == "session ended"]
    ended = vars(record)  # the line's fields, as the JSON log writes them
    assert echoes == list(range(held + then))
    assert ended["frames_in"] == held + then + 1
    # The held chunks cannot have taken it; how many of the rest did depends on timing.
    assert ended["fast_frames_in"] <= then


async def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return any(record.getMessage() == message for record in caplog.records)
