"""What an emulator has seen, for tests to assert on (live counters, not a snapshot)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmulatorStats:
    connections_accepted: int = 0
    connections_open: int = 0
    # By kind: setup, client_content, tool_response, audio, video, text, activity_start,
    # activity_end, audio_stream_end (a legacy media chunk counts as audio or video).
    frames_received: Counter[str] = field(default_factory=Counter)
    # The raw `Authorization` header of the latest upgrade request (None: none was sent).
    last_authorization: str | None = None
    # Every accepted setup message, normalized to camelCase.
    setups: list[dict[str, Any]] = field(default_factory=list)
    # realtimeInput.text messages in the order they arrived (ordering tests of a proxy).
    texts: list[str] = field(default_factory=list)
    # Client frames that arrived as binary WebSocket frames (setup included).
    binary_frames: int = 0
    # (code, reason) of every close frame a client sent.
    closes_received: list[tuple[int, str]] = field(default_factory=list)
    turns_completed: int = 0
    interruptions: int = 0
    tool_calls: int = 0
    tool_call_cancellations: int = 0
