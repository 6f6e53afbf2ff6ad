"""Session resumption: conversations that outlive connections, and handles naming snapshots.

A `Conversation` is what resumption keeps alive: its id (`setupComplete.sessionId`), the
numbering of its connections, and its share of `EmulatorStats.consumed`. A handle names a
`Snapshot`: the conversation's state as of one client message (`last_index`), for a limited
time. Resuming restores that state on a new connection; whatever the abandoned connection
consumed after the snapshot is gone, unless the client sends it again (transparent mode).
"""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.emulator.caps import MediaClock
from app.emulator.replies import Entry
from app.emulator.stats import ConsumedMessage, EmulatorStats
from app.emulator.vad import VoiceActivityDetector

SESSION_NOT_FOUND = "BidiGenerateContent session not found"
# What a resumption refused because the handle's connection is still open closes with
# (1011): the reports name the code but not the words, so this is the service's usual 1011.
RESUMED_WHILE_OPEN = "Internal error encountered."


def consumed_index(update: dict[str, Any]) -> int | None:
    """`lastConsumedClientMessageIndex` of a `sessionResumptionUpdate`, sent as a JSON string
    (int64 in proto-JSON) or as a number; None when absent."""
    value = update.get(
        "lastConsumedClientMessageIndex", update.get("last_consumed_client_message_index")
    )
    return None if value is None else int(value)


@dataclass(eq=False)
class Conversation:
    """One conversation across all the connections that resume it."""

    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    connections: int = 0
    # This conversation's entries of EmulatorStats.consumed, in order.
    records: list[ConsumedMessage] = field(default_factory=list)
    # When it began and what media it received (its duration cap, when counted across
    # resumptions).
    media: MediaClock = field(default_factory=MediaClock)
    # A connection of it was closed at the hard deadline (EmulatorConfig.deadline_close_seconds).
    deadline_expired: bool = False
    # When the hard deadline counted over the conversation started (monotonic seconds, the
    # event loop's clock): its start, then each deadline close.
    deadline_from: float = field(default_factory=time.monotonic)
    # Connection number -> "is it still open?", for connections not yet finished.
    _open: dict[int, Callable[[], bool]] = field(default_factory=dict)

    def open_connection(self, is_open: Callable[[], bool]) -> int:
        """Number a new connection of this conversation (1, 2, ...) and watch whether it is open."""
        self.connections += 1
        self._open[self.connections] = is_open
        return self.connections

    def close_connection(self, number: int) -> None:
        self._open.pop(number, None)

    def is_open(self, number: int) -> bool:
        is_open = self._open.get(number)
        return is_open is not None and is_open()

    def rewind(self, records: int, stats: EmulatorStats) -> None:
        """Forget the records after the first `records`: a snapshot that old is being resumed."""
        dropped = self.records[records:]
        if not dropped:
            return
        del self.records[records:]
        gone = {id(record) for record in dropped}
        stats.consumed[:] = [record for record in stats.consumed if id(record) not in gone]


@dataclass(frozen=True)
class SessionState:
    """What a session carries across a resumption besides its history."""

    history: tuple[Entry, ...] = ()
    # clientContent turns received without turnComplete yet.
    client_text: tuple[str, ...] = ()
    # Input received since the previous turn (billed with the next one).
    audio_seconds: float = 0.0
    video_frames: int = 0
    # The voice activity detector mid-utterance (a copy), and an explicit activity if one is open.
    vad: VoiceActivityDetector | None = None
    explicit_activity_seconds: float | None = None

    def detector(self) -> VoiceActivityDetector | None:
        """A private copy of the saved detector: one snapshot may be resumed more than once."""
        return copy.deepcopy(self.vad)


@dataclass(frozen=True)
class Snapshot:
    conversation: Conversation
    # The conversation's connection that issued the handle.
    connection: int
    # The index of the last client message included (setup: 0).
    last_index: int
    # How many of the conversation's consumed records are included.
    records: int
    state: SessionState


class HandleStore:
    """Handles issued by one emulator, shared by all its connections.

    A handle stays valid `ttl_seconds` after it was issued. Every handle has the same
    lifetime, so insertion order is expiry order and pruning only looks at the oldest. At
    most `max_handles` are kept (each holds a conversation's history).
    """

    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_handles: int = 10_000,
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._max_handles = max_handles
        self._snapshots: dict[str, tuple[float, Snapshot]] = {}

    def issue(self, snapshot: Snapshot) -> str:
        self._prune()
        if len(self._snapshots) >= self._max_handles:
            # Bounded: the oldest handle goes first, as it would expire first.
            del self._snapshots[next(iter(self._snapshots))]
        handle = secrets.token_hex(16)
        self._snapshots[handle] = (self._clock() + self._ttl, snapshot)
        return handle

    def resume(self, handle: str) -> Snapshot | None:
        """The snapshot a handle names, or None when it is unknown or expired."""
        self._prune()
        entry = self._snapshots.get(handle)
        return None if entry is None else entry[1]

    def _prune(self) -> None:
        now = self._clock()
        expired = []
        for handle, (expires_at, _) in self._snapshots.items():
            if expires_at > now:
                break
            expired.append(handle)
        for handle in expired:
            del self._snapshots[handle]
