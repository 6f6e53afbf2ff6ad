"""Which client messages a conversation consumed, numbered as `lastConsumedClientMessageIndex`.

Vertex does not document how it counts. The one public implementation (Google's Live API
session-manager guide) assumes per-connection counting with the setup as 0, so that is the
default; `consumed_index_counting="per_session"` numbers on across resumptions instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from app.emulator.resumption import Conversation
from app.emulator.stats import ConsumedMessage, EmulatorStats
from app.emulator.wire import decode_base64, interpret


def message_kind(kind: str, value: dict[str, Any]) -> str:
    """The `frames_received` kind of a normalized client message (top-level field `kind`)."""
    if kind == "clientContent":
        return "client_content"
    if kind == "toolResponse":
        return "tool_response"
    if kind == "contextUpdate":
        return "context_update"
    if kind != "realtimeInput":
        return kind
    if "mediaChunks" in value:
        chunks = value["mediaChunks"] or [{}]
        return "audio" if str(chunks[0].get("mimeType", "")).startswith("audio/") else "video"
    for field, name in (
        ("audio", "audio"),
        ("video", "video"),
        ("text", "text"),
        ("activityStart", "activity_start"),
        ("activityEnd", "activity_end"),
        ("audioStreamEnd", "audio_stream_end"),
    ):
        if field in value:
            return name
    return "realtime_input"


def message_digest(message: Any) -> str:
    """sha256 hex of a client message's payload: its audio bytes (base64-decoded), its text
    (realtimeInput.text), or else its canonical JSON (camelCase names, sorted keys).

    Takes the message as the client sent it, so a test can hash what it sends and compare.
    """
    kind, value = interpret(message)
    return _digest(kind, value)


def _digest(kind: str, value: dict[str, Any]) -> str:
    payload: bytes | None = None
    if kind == "realtimeInput" and len(value) == 1:
        if "audio" in value:
            payload = decode_base64(value["audio"].get("data"), "realtime_input.audio.data")
        elif "text" in value:
            payload = str(value["text"]).encode()
        elif "mediaChunks" in value and all(
            str(chunk.get("mimeType", "")).startswith("audio/") for chunk in value["mediaChunks"]
        ):
            payload = b"".join(
                decode_base64(chunk.get("data"), "realtime_input.media_chunks.data")
                for chunk in value["mediaChunks"]
            )
    if payload is None:
        payload = json.dumps(
            {kind: value}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    return hashlib.sha256(payload).hexdigest()


class ConsumptionLog:
    """One connection's count of consumed client messages, and its records in the stats."""

    def __init__(
        self,
        conversation: Conversation,
        connection: int,
        last_index: int,
        stats: EmulatorStats,
        max_records: int,
    ) -> None:
        self.conversation = conversation
        self.connection = connection
        # The index of the last consumed message (the setup: 0 unless counting runs on).
        self.last_index = last_index
        self._stats = stats
        self._max_records = max_records

    def consume(self, kind: str, value: dict[str, Any]) -> None:
        """Count one message the session has just applied (normalized, top-level field `kind`)."""
        self.last_index += 1
        if len(self._stats.consumed) >= self._max_records:
            return
        record = ConsumedMessage(
            session=self.conversation.session_id,
            connection=self.connection,
            index=self.last_index,
            kind=message_kind(kind, value),
            digest=_digest(kind, value),
        )
        self._stats.consumed.append(record)
        self.conversation.records.append(record)
