"""The emulator's Vertex-style refusals reach a client of the relay unchanged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.support.relay import running_relay
from tests.support.sdk import TURN_TIMEOUT

TEXT: dict[str, Any] = {"generationConfig": {"responseModalities": ["TEXT"]}}


async def refusal(frames: list[dict[str, Any]]) -> tuple[int, str]:
    """Send `frames` through a relay in front of a default emulator; the close received."""
    async with (
        Emulator() as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        for frame in frames:
            await ws.send(json.dumps(frame))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(TURN_TIMEOUT):
                while True:
                    await ws.recv()
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


async def test_an_unknown_setup_field_is_refused_in_the_services_words() -> None:
    setup = {
        "setup": {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"], "bogus": 1}}
    }
    assert await refusal([setup]) == (
        1007,
        "Invalid JSON payload received. Unknown name \"bogus\" at 'setup.generation_config': "
        "Cannot find field.",
    )


async def test_an_unknown_field_mid_session_is_refused_in_the_services_words() -> None:
    frames: list[dict[str, Any]] = [
        {"setup": {"model": MODEL, **TEXT}},
        {"realtimeInput": {"audioStreamEnd": True}},
    ]
    assert await refusal(frames) == (
        1007,
        "Invalid JSON payload received. Unknown name \"audioStreamEnd\" at 'realtime_input': "
        "Cannot find field.",
    )


async def test_a_native_audio_model_asked_for_text_is_refused_through_the_relay() -> None:
    setup = {"setup": {"model": "gemini-live-2.5-flash-native-audio", **TEXT}}
    assert await refusal([setup]) == (1007, "Request contains an invalid argument.")
