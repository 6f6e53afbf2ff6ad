"""Session resumption handles: each names a snapshot of a conversation, for a limited time."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from app.emulator.replies import Entry

SESSION_NOT_FOUND = "BidiGenerateContent session not found"


class HandleStore:
    """Handles issued by one emulator, shared by all its connections.

    A handle stays valid `ttl_seconds` after it was issued. Every handle has the same
    lifetime, so insertion order is expiry order and pruning only looks at the oldest.
    """

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._snapshots: dict[str, tuple[float, tuple[Entry, ...]]] = {}

    def issue(self, history: tuple[Entry, ...]) -> str:
        self._prune()
        handle = secrets.token_hex(16)
        self._snapshots[handle] = (self._clock() + self._ttl, history)
        return handle

    def resume(self, handle: str) -> tuple[Entry, ...] | None:
        """The conversation a handle names, or None when it is unknown or expired."""
        self._prune()
        snapshot = self._snapshots.get(handle)
        return None if snapshot is None else snapshot[1]

    def _prune(self) -> None:
        now = self._clock()
        expired = []
        for handle, (expires_at, _) in self._snapshots.items():
            if expires_at > now:
                break
            expired.append(handle)
        for handle in expired:
            del self._snapshots[handle]
