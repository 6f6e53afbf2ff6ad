"""Session duration caps: audio and audio+video sessions end unless the context is compressed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.emulator.support import (
    TEXT,
    raw_connection,
    raw_reply_text,
    raw_setup,
    recv_raw_turn,
    recv_setup_complete,
    until_closed,
)
from tests.support.audio import silence

DEADLINE = (1011, "Deadline expired before operation could complete.")
AUDIO = json.dumps(
    {
        "realtimeInput": {
            "audio": {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(silence(0.02)).decode(),
            }
        }
    }
)
VIDEO = json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}})


def caps(**overrides: Any) -> EmulatorConfig:
    """Short caps; the connection lifetime far beyond them."""
    settings: dict[str, Any] = {
        "audio_session_cap_seconds": 1.0,
        "video_session_cap_seconds": 0.6,
        "goaway_notice_seconds": 0.3,
        "connection_lifetime_seconds": 60,
        **overrides,
    }
    return EmulatorConfig(**settings)


@pytest.mark.parametrize("media", [AUDIO, VIDEO])
async def test_a_session_with_audio_or_video_ends_at_its_cap_after_a_go_away(media: str) -> None:
    async with Emulator(caps()) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_setup_complete(ws)
        await ws.send(media)
        messages = await until_closed(ws)

    go_aways = [m["goAway"]["timeLeft"] for m in messages if "goAway" in m]
    assert len(go_aways) == 1
    assert 0 < float(go_aways[0][:-1]) <= 0.3
    assert (ws.close_code, ws.close_reason) == DEADLINE


async def test_video_brings_the_shorter_cap() -> None:
    # Audio alone would allow a minute; video cuts it to 0.6 s.
    config = caps(audio_session_cap_seconds=60)
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_setup_complete(ws)
        await ws.send(AUDIO)
        await ws.send(VIDEO)
        await until_closed(ws)

    assert (ws.close_code, ws.close_reason) == DEADLINE


async def test_text_only_and_compressed_sessions_have_no_cap() -> None:
    # Only the connection lifetime ends them (1000), long after the caps would have.
    config = caps(connection_lifetime_seconds=2.0, goaway_notice_seconds=0.1)
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT, contextWindowCompression={"slidingWindow": {}}))
            await recv_setup_complete(ws)
            await ws.send(AUDIO)
            await ws.send(VIDEO)
            await until_closed(ws)
        compressed = ws.close_code
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT))
            await recv_setup_complete(ws)
            await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
            await until_closed(ws)
        text_only = ws.close_code

    assert (compressed, text_only) == (1000, 1000)


@pytest.mark.parametrize("scope", ["conversation", "connection"])
async def test_the_cap_counts_across_resumptions_unless_told_otherwise(scope: str) -> None:
    config = caps(session_cap_scope=scope)
    resumable = {**TEXT, "sessionResumption": {}}
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**resumable))
            await recv_setup_complete(ws)
            handle = json.loads(await ws.recv())["sessionResumptionUpdate"]["newHandle"]
            await ws.send(AUDIO)
            await until_closed(ws)
        assert (ws.close_code, ws.close_reason) == DEADLINE
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT, sessionResumption={"handle": handle}))
            await recv_setup_complete(ws)
            if scope == "conversation":
                # The conversation is past its cap: the resumed connection ends at once.
                await until_closed(ws)
                assert (ws.close_code, ws.close_reason) == DEADLINE
            else:
                await ws.send(json.dumps({"realtimeInput": {"text": "still here?"}}))
                turn = await recv_raw_turn(ws)
                assert "still here?" in raw_reply_text(turn)
