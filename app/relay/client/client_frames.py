"""Every client frame after the setup, held to the session's policy before it goes upstream.

The setup is not the only message that shapes a session: a `contextUpdate` replaces the system
instruction and the tools for the turns to come, and a frame can hold a second message type
beside the one a quick look sees. So every frame is read against the protocol model
(`app.protocol`), in one spelling, before anything is decided:

- `realtimeInput` (audio, video, text): forwarded as sent. Most frames are audio, so their
  type is decided without decoding the media (see `media_skeleton`).
- `clientContent`, `toolResponse`: forwarded in canonical form (camelCase, one spelling).
- `contextUpdate`: a change to a locked field closes the session 1008 naming it, or, where the
  project says `on_locked_update = "drop"`, goes upstream without the locked fields.
- a second `setup`: 1007. Unknown message types and fields: 1007 naming them, unless the
  operator forwards them (`RELAY_FORWARD_UNKNOWN_CLIENT_FIELDS`).
- more or fewer than one message type in a frame: 1007 (the service reads a oneof).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, AnyStr

from app import bounded_json
from app.auth.setup_locks import SETUP, first_departure
from app.protocol.canonical import client_message
from app.protocol.errors import ProtocolViolation
from app.relay.closes import INVALID_PAYLOAD, POLICY_VIOLATION

Frame = str | bytes

# The fields of a contextUpdate; each replaces the setup field of the same name.
_UPDATABLE = ("systemInstruction", "tools")


@dataclass(frozen=True)
class FrameRules:
    """What a session's later frames may do; built once per session."""

    # The setup fields locked for this session, canonical: the session token's and the
    # project's (as in force when the session started).
    locks: Mapping[str, Any]
    # A contextUpdate touching a lock: forwarded without the locked fields (True) or refused.
    drop_locked_updates: bool = False
    # Message types and fields the protocol model does not know: forwarded as sent.
    keep_unknown: bool = False


class ClientFrames:
    """One session's reader of client frames: `admit` returns what goes upstream."""

    def __init__(self, rules: FrameRules) -> None:
        self._rules = rules
        # The skeleton of the last media frame found valid: the next frame with the same one
        # (the same message, only its media differing) needs no parsing at all.
        self._known_skeleton: Frame | None = None
        self.dropped_updates = 0  # contextUpdates (or parts) not forwarded, for the session log

    def admit(self, frame: Frame) -> Frame | None:
        """The frame to forward (itself, or its canonical form), None to forward nothing, or
        ProtocolViolation with the close the client gets."""
        skeleton = media_skeleton(frame)
        if skeleton is not None:
            if skeleton == self._known_skeleton:
                return frame
            kind, _ = _read(skeleton, self._rules.keep_unknown)
            if kind == "realtimeInput":
                self._known_skeleton = skeleton
                return frame
        kind, value = _read(frame, self._rules.keep_unknown)
        if kind == "setup":
            raise ProtocolViolation(INVALID_PAYLOAD, "setup comes once, as the first message")
        if kind == "contextUpdate":
            update = self._context_update(value)
            if update is None:
                return None
            value = update
        text = json.dumps({kind: value}, separators=(",", ":"), ensure_ascii=False)
        return text.encode() if isinstance(frame, bytes) else text

    def _context_update(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """The update without the locked fields it would change (or ProtocolViolation)."""
        locks = self._rules.locks
        for name in _UPDATABLE:
            if name not in update or name not in locks:
                continue
            value = update[name]
            if name == "tools":  # a wrapper: {"tools": [...]}; no list clears the tools
                value = value.get("tools", [])
            departure = first_departure({name: locks[name]}, {name: value}, SETUP)
            if departure is None:
                continue
            if not self._rules.drop_locked_updates:
                raise ProtocolViolation(
                    POLICY_VIOLATION, f'contextUpdate changes "{departure}", which is locked'
                )
            del update[name]
            self.dropped_updates += 1
        return update or None


def _read(frame: Frame, keep_unknown: bool) -> tuple[str, dict[str, Any]]:
    try:
        message = bounded_json.loads(frame)
    except bounded_json.JsonRejected as rejected:
        reason = "Invalid JSON payload received." if rejected.malformed else str(rejected)
        raise ProtocolViolation(INVALID_PAYLOAD, reason) from None
    return client_message(message, keep_unknown=keep_unknown)


def media_skeleton(frame: Frame) -> Frame | None:
    """`frame` with the value of its first `"data"` field emptied, or None if it has none.

    Media is a long base64 string in a `"data"` field; the rest of an audio frame is a few
    dozen bytes. The skeleton holds every key and every other value of the frame, so reading
    it decides what the frame is. It is exact: the value cut out is a whole JSON string only
    when it holds no backslash (so the next quote ends it), and base64 never does; any other
    frame returns None and is read whole.
    """
    if isinstance(frame, bytes):
        return _skeleton(frame, _DATA_VALUE_BYTES, b'"', b"\\")
    return _skeleton(frame, _DATA_VALUE_TEXT, '"', "\\")


_DATA_VALUE_TEXT = re.compile(r'"data"\s*:\s*"')
_DATA_VALUE_BYTES = re.compile(rb'"data"\s*:\s*"')


def _skeleton(
    frame: AnyStr, value: re.Pattern[AnyStr], quote: AnyStr, escape: AnyStr
) -> AnyStr | None:
    found = value.search(frame)
    if found is None:
        return None
    start = found.end()  # just past the opening quote
    end = frame.find(quote, start)
    if end < 0 or frame.find(escape, start, end) >= 0:
        return None
    return frame[:start] + frame[end:]
