"""How much audio a client frame holds, for models billed by the relay's estimate: the client
names its rate, but cannot name its bill away."""

from __future__ import annotations

import base64
import json

import pytest

from app.relay.upstream.estimated_usage import audio_seconds

ONE_SECOND_AT_16K = base64.b64encode(bytes(32_000)).decode()


def audio_frame(mime_type: str) -> str:
    blob = {"mimeType": mime_type, "data": ONE_SECOND_AT_16K}
    return json.dumps({"realtimeInput": {"audio": blob}})


@pytest.mark.parametrize(
    ("mime_type", "seconds"),
    [
        ("audio/pcm;rate=16000", 1.0),
        ("audio/pcm", 1.0),  # no rate named: 16 kHz, as the Live API assumes
        ("audio/pcm;rate=1000000000", 32_000 / 2 / 48_000),  # held to 48 kHz
        ("audio/pcm;rate=1", 32_000 / 2 / 8_000),  # held to 8 kHz
    ],
)
def test_a_frame_is_counted_at_the_rate_it_names_held_to_what_audio_can_be(
    mime_type: str, seconds: float
) -> None:
    assert audio_seconds(audio_frame(mime_type)) == pytest.approx(seconds)


def test_text_and_other_messages_hold_no_audio() -> None:
    assert audio_seconds(json.dumps({"realtimeInput": {"text": "data"}})) == 0.0
    assert audio_seconds(json.dumps({"clientContent": {"turnComplete": True}})) == 0.0
