"""Client frames the upstream has not confirmed consumed, kept to be replayed after a switch.

Every client frame after the setup gets a sequence number (1, 2, ...): the number the client
itself would give it, counting its setup as 0. A resumption handle covers the frames up to some
sequence number; after a switch, the frames after that number are sent again, in order, once.

The buffer is bounded in bytes. Going over the bound does not end a healthy session: the oldest
frames are dropped and remembered as lost, and only a switch that would need one of them fails
(`replayable_from`). A later handle that covers them makes the buffer whole again.

The bytes kept are also charged to the process's `ReplayBudget`, shared by every session. A
buffer the budget drops (`drop`) loses its frames and keeps none from then on: every frame
after that is lost as it comes, so only a switch the upstream has fully confirmed can succeed.
"""

from __future__ import annotations

from collections import deque

from app.logs import session_id_var
from app.relay.upstream.replay_budget import ReplayBudget


class ReplayBuffer:
    def __init__(self, max_bytes: int, budget: ReplayBudget | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._bound = max_bytes  # 0 once dropped: every frame then goes as it comes
        # Without a budget of the process's, one of its own: the per-session bound is the limit.
        self._budget = budget if budget is not None else ReplayBudget(max_bytes)
        self._budget.join(self)
        self._frames: deque[str | bytes] = deque()
        self._first_seq = 1  # sequence number of _frames[0]
        self._size = 0
        self.lost_through = 0  # frames up to this number were dropped over the bound
        self.dropped = False  # by the budget: nothing is kept any more
        # Whose input this is, for the budget's log line: another session's append drops it.
        self.session = session_id_var.get()

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
        # The hot path: one more integer addition and comparison than without a budget.
        self._frames.append(frame)
        size = len(frame)
        self._size += size
        budget = self._budget
        budget.held += size
        if self._size > self._bound:
            frames = self._frames
            while self._size > self._bound and frames:
                size = len(frames.popleft())
                self._size -= size
                budget.held -= size
                self.lost_through = self._first_seq
                self._first_seq += 1
        if budget.held > budget.max_bytes:
            budget.reclaim()
        return self._first_seq + len(self._frames) - 1

    def prune_through(self, seq: int) -> None:
        """Forget the frames up to `seq`: a resumable handle covers them."""
        frames = self._frames
        freed = 0
        while frames and self._first_seq <= seq:
            freed += len(frames.popleft())
            self._first_seq += 1
        self._size -= freed
        self._budget.held -= freed

    def drop(self) -> None:
        """Give up every frame held, and every later one as it comes (the budget's decision)."""
        self.dropped = True
        self._bound = 0
        if self._frames:
            self.lost_through = self.last_seq
            self._first_seq += len(self._frames)
        self._release()

    def release(self) -> None:
        """Give the bytes held back to the budget: the session has ended."""
        self._first_seq += len(self._frames)
        self._release()

    def _release(self) -> None:
        self._frames.clear()
        self._budget.held -= self._size
        self._size = 0
        self._budget.leave(self)

    def replayable_from(self, seq: int) -> bool:
        """Whether every frame after `seq` is still here."""
        return self.lost_through <= seq

    def get(self, seq: int) -> str | bytes | None:
        """The frame numbered `seq`, or None when it is not (or no longer) held."""
        index = seq - self._first_seq
        if 0 <= index < len(self._frames):
            return self._frames[index]
        return None
