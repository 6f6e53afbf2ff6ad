"""The probe frames the load generator sends, and the statistics it reports."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from app.loadtest.probe import AudioProbe, Echo, chunk_bytes, read_echo
from app.loadtest.stats import percentile, summarize_ns

ECHO_HEAD = (
    '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
    '{"mimeType":"audio/pcm;rate=24000","data":"'
)
ECHO_TAIL = '"}}]}}}'


def echo_of(frame: bytes) -> bytes:
    """What the emulator's echo mode sends back for an audio frame."""
    data = json.loads(frame)["realtimeInput"]["audio"]["data"]
    return f"{ECHO_HEAD}{data}{ECHO_TAIL}".encode()


def test_frame_is_a_realtime_audio_message_of_the_chunk_length() -> None:
    frame = json.loads(AudioProbe(40).frame(3, 7, 123))
    audio = frame["realtimeInput"]["audio"]
    assert audio["mimeType"] == "audio/pcm;rate=16000"
    assert len(base64.b64decode(audio["data"], validate=True)) == chunk_bytes(40) == 1280


def test_echo_gives_back_session_sequence_and_send_time() -> None:
    frame = AudioProbe(20).frame(session=41, sequence=99_000, sent_ns=2**62 + 5)
    assert read_echo(echo_of(frame)) == Echo(41, 99_000, 2**62 + 5)


def test_echo_re_serialised_with_spaces_is_still_read() -> None:
    frame = AudioProbe(40).frame(1, 2, 3)
    reformatted = json.dumps(json.loads(echo_of(frame)), indent=1).encode()
    assert b'"data":"' not in reformatted
    assert read_echo(reformatted) == Echo(1, 2, 3)


@pytest.mark.parametrize(
    "message",
    [
        b'{"setupComplete":{}}',
        b'{"serverContent":{"turnComplete":true}}',
        b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"data":"AAAAAAAAAAAAAAAAAAAAAAAA"}}]}}}',
        b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"data":"not base64 at all"}}]}}}',
    ],
)
def test_messages_that_are_not_probe_echoes_are_recognised_as_such(message: bytes) -> None:
    assert read_echo(message) is None


def test_consecutive_frames_carry_different_audio_so_deflate_is_not_flattered() -> None:
    probe = AudioProbe(40)
    payloads = [
        base64.b64decode(json.loads(probe.frame(0, n, 0))["realtimeInput"]["audio"]["data"])
        for n in range(30)
    ]
    assert len({payload[18:] for payload in payloads}) == 30
    # Speech-like PCM: deflate saves something, but nothing like on silence.
    ratio = len(zlib.compress(b"".join(payloads))) / len(b"".join(payloads))
    assert 0.5 < ratio < 0.98


def test_chunk_length_outside_the_supported_range_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        AudioProbe(0)


def test_percentile_is_nearest_rank() -> None:
    samples = list(range(1, 101))
    assert percentile(samples, 0.50) == 50
    assert percentile(samples, 0.99) == 99
    assert percentile(samples, 1.0) == 100
    assert percentile([7], 0.99) == 7


def test_summary_is_in_milliseconds_and_empty_when_nothing_was_measured() -> None:
    summary = summarize_ns([1_000_000, 2_000_000, 3_000_000, 40_000_000])
    assert (summary.count, summary.p50, summary.p99, summary.max) == (4, 2.0, 40.0, 40.0)
    assert summarize_ns([]).count == 0
