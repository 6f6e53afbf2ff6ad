"""Usage for models whose upstream reports none: an estimate, so no session runs unmetered.

The relay charges a project's token quota with what the service reports (`usageMetadata`).
Some Live models, transcription-only ones, have been reported to send none at all (the
shared protocol reference, §7; users of other gateways in issue 25): their sessions would run
outside every token quota. For the models in `RELAY_ESTIMATED_USAGE_MODELS`,
`EstimatedUsageLeg` wraps the upstream leg (the way the Gemini dialect does: `Session` cannot
tell it from the connection) and

- counts the seconds of audio the client sends (`realtimeInput` audio, from the length of its
  base64 and the rate its MIME type names, held to 8-48 kHz; 16 kHz when it names none);
- at each `turnComplete` of a turn that brought no `usageMetadata`, sends the client one of
  its own, alone, as the service may: the audio heard since the previous turn at 25 tokens a
  second (Vertex's rate for audio input), as prompt tokens. `Session` charges it like any.

A turn that does bring usage is charged as reported, never twice. Audio sent after the last
turn of a session is not charged. The hot path of other sessions is untouched.
"""

from __future__ import annotations

import json
import math
import re

from websockets.typing import Data

from app.relay.fast_lane import Lane, LaneOver, lane_of
from app.relay.sniff import TURN_COMPLETE_KEY, USAGE_KEY
from app.relay.upstream.upstream_leg import UpstreamLeg

AUDIO_TOKENS_PER_SECOND = 25
DEFAULT_INPUT_RATE = 16_000
# The rate a client names is its word about its own bill: held to what audio input can be, so
# `rate=1000000000` cannot charge a second of speech as nothing.
MIN_INPUT_RATE, MAX_INPUT_RATE = 8_000, 48_000
_HEAD = 64  # the message type comes first
_REALTIME = re.compile(rb'"realtime_?[iI]nput"')
# A MIME type in quotes: base64 never holds a quote, so audio data cannot fake one.
_AUDIO_MIME = re.compile(rb'"audio/[^"]*')
_RATE = re.compile(rb"rate=(\d+)")
_DATA = re.compile(rb'"data"\s*:\s*"')
_USAGE_TEXT = USAGE_KEY.decode()
_TURN_COMPLETE_TEXT = TURN_COMPLETE_KEY.decode()


def audio_seconds(frame: Data) -> float:
    """Seconds of 16-bit mono PCM in a client frame of realtime audio (0: not one). The SDKs
    put the MIME type before or after the data: both are found."""
    raw = frame.encode() if isinstance(frame, str) else bytes(frame)
    if _REALTIME.search(raw, 0, _HEAD) is None:
        return 0.0
    mime = _AUDIO_MIME.search(raw)
    if mime is None:
        return 0.0
    named = _RATE.search(mime.group())
    rate = int(named.group(1)) if named else DEFAULT_INPUT_RATE
    rate = min(max(rate, MIN_INPUT_RATE), MAX_INPUT_RATE)
    seconds = 0.0
    for found in _DATA.finditer(raw):
        start, end = found.end(), raw.find(b'"', found.end())
        if end > start:
            tail = raw[max(start, end - 2) : end]
            padding = len(tail) - len(tail.rstrip(b"="))
            seconds += ((end - start) * 3 // 4 - padding) / 2 / rate
    return seconds


def estimated_usage(seconds: float) -> bytes:
    tokens = math.ceil(round(seconds * AUDIO_TOKENS_PER_SECOND, 6))
    usage = {
        "promptTokenCount": tokens,
        "candidatesTokenCount": 0,
        "totalTokenCount": tokens,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": tokens}],
    }
    return json.dumps({"usageMetadata": usage}, separators=(",", ":")).encode()


class EstimatedUsageLeg:
    """The upstream leg of a session whose model reports no usage (see the module doc). Make
    it with `estimated_usage_leg`."""

    def __init__(self, upstream: UpstreamLeg) -> None:
        self._upstream = upstream
        self._audio_seconds = 0.0  # heard since the previous turnComplete
        self._usage_seen = False  # the turn in progress brought its own usageMetadata
        self._pending: bytes | None = None  # an estimate to hand out after its turnComplete

    def outgoing(self, message: Data) -> Data:
        self._audio_seconds += audio_seconds(message)
        return message

    async def send(self, message: Data) -> None:
        await self._upstream.send(self.outgoing(message))

    async def recv(self) -> Data:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        frame = await self._upstream.recv()
        raw = frame.encode() if isinstance(frame, str) else frame
        if USAGE_KEY in raw:
            self._usage_seen = True
        if TURN_COMPLETE_KEY in raw:
            if not self._usage_seen and self._audio_seconds > 0:
                self._pending = estimated_usage(self._audio_seconds)
            self._audio_seconds, self._usage_seen = 0.0, False
        return frame

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._upstream.close(code, reason)


class _EstimatedUsageLane(EstimatedUsageLeg, LaneOver):
    """Estimated usage over a leg with a fast lane, which it keeps: client audio is counted as
    `send` counts it, and a frame `recv` must see (usage, a turn's end, anything while an
    estimate waits to go first) declines the lane."""

    def __init__(self, upstream: UpstreamLeg, lane: Lane) -> None:
        super().__init__(upstream)
        self._lane = lane
        self._sink = None

    def declines(self, message: Data) -> bool:
        if self._pending is not None:
            return True
        if isinstance(message, str):
            return _USAGE_TEXT in message or _TURN_COMPLETE_TEXT in message
        return USAGE_KEY in message or TURN_COMPLETE_KEY in message


def estimated_usage_leg(upstream: UpstreamLeg) -> UpstreamLeg:
    """`upstream` with usage estimated for a model that reports none, keeping its fast lane."""
    lane = lane_of(upstream)
    return EstimatedUsageLeg(upstream) if lane is None else _EstimatedUsageLane(upstream, lane)
