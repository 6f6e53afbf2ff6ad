"""What an emulator has seen, for tests to assert on (live counters, not a snapshot)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConsumedMessage:
    """One client message the emulated conversation took in (see `EmulatorStats.consumed`)."""

    # The conversation: the `setupComplete.sessionId`, the same on every resumed connection.
    session: str
    # 1 for the conversation's first connection, 2 after its first resumption, ...
    connection: int
    # The index the emulator reports for it in `lastConsumedClientMessageIndex`.
    index: int
    # As in `EmulatorStats.frames_received`: audio, video, text, client_content, ...
    kind: str
    # `consumption.message_digest` of the message: equal digests, equal payloads.
    digest: str


@dataclass
class EmulatorStats:
    connections_accepted: int = 0
    connections_open: int = 0
    # Connections that negotiated permessage-deflate (EmulatorConfig.permessage_deflate).
    compressed_connections: int = 0
    # By kind: setup, client_content, tool_response, context_update, audio, video, text,
    # activity_start, activity_end, audio_stream_end (a legacy media chunk counts as audio or
    # video).
    frames_received: Counter[str] = field(default_factory=Counter)
    # The raw `Authorization` header of the latest upgrade request (None: none was sent).
    last_authorization: str | None = None
    # Every accepted setup message, normalized to camelCase.
    setups: list[dict[str, Any]] = field(default_factory=list)
    # Every accepted contextUpdate message (its value), normalized to camelCase.
    context_updates: list[dict[str, Any]] = field(default_factory=list)
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
    # Live Avatar video frames sent (24 a second of speech), over all sessions.
    video_frames_sent: int = 0
    # Client messages after setup that are part of a conversation's state, in arrival order.
    # Resuming a handle drops the records of messages its snapshot does not include (they
    # were consumed by a connection whose later state is abandoned), so for one session the
    # digests read like the messages the conversation holds: a message lost across a
    # resumption is missing, one replayed twice appears twice. Not kept in echo mode.
    consumed: list[ConsumedMessage] = field(default_factory=list)
