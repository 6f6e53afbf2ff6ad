"""Client frames the upstream has not confirmed consumed, kept to be replayed after a switch.

Every client frame after the setup gets a sequence number (1, 2, ...): the number the client
itself would give it, counting its setup as 0. A resumption handle covers the frames up to some
sequence number; after a switch, the frames after that number are sent again, in order, once.

The buffer is bounded in bytes. Going over the bound does not end a healthy session: the oldest
frames are dropped and remembered as lost, and only a switch that would need one of them fails
(`replayable_from`). A later handle that covers them makes the buffer whole again.
"""

from __future__ import annotations

from collections import deque


class ReplayBuffer:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._frames: deque[str | bytes] = deque()
        self._first_seq = 1  # sequence number of _frames[0]
        self._size = 0
        self.lost_through = 0  # frames up to this number were dropped over the bound

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size(self) -> int:
        """Bytes held (text frames are ASCII JSON: characters are bytes)."""
        return self._size

    @property
    def last_seq(self) -> int:
        """Sequence number of the latest frame appended (0: none yet)."""
        return self._first_seq + len(self._frames) - 1

    def append(self, frame: str | bytes) -> int:
        """Keep `frame`; return its sequence number."""
        self._frames.append(frame)
        self._size += len(frame)
        while self._size > self.max_bytes and self._frames:
            self._size -= len(self._frames.popleft())
            self.lost_through = self._first_seq
            self._first_seq += 1
        return self.last_seq

    def prune_through(self, seq: int) -> None:
        """Forget the frames up to `seq`: a resumable handle covers them."""
        frames = self._frames
        while frames and self._first_seq <= seq:
            self._size -= len(frames.popleft())
            self._first_seq += 1

    def replayable_from(self, seq: int) -> bool:
        """Whether every frame after `seq` is still here."""
        return self.lost_through <= seq

    def get(self, seq: int) -> str | bytes | None:
        """The frame numbered `seq`, or None when it is not (or no longer) held."""
        index = seq - self._first_seq
        if 0 <= index < len(self._frames):
            return self._frames[index]
        return None
