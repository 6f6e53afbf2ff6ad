"""One process's budget of bytes for every session's replay buffer.

Each `ReplayBuffer` is bounded on its own (`RELAY_RESUMPTION_BUFFER_BYTES`), but an upstream
that rarely confirms input (one that never sends resumption updates) lets every session fill
its buffer: 400 sessions at 8 MiB would hold 3.2 GB. The budget bounds their sum.

Every buffer charges the bytes it keeps and releases the bytes it forgets, in a plain integer
(no lock: one event loop owns the process's sessions). Past the budget, the buffers holding the
most input are dropped first until the sum is back under it: the largest holders are the
sessions furthest from a confirmation, and dropping one frees the most for everyone else. A
dropped buffer keeps nothing more for the rest of its session, so its next switch fails
explicitly (`buffer_overflow`), as a switch does at the per-session bound, unless the upstream
has confirmed every frame by then. Each drop is counted and logged once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.metrics import RelayMetrics

if TYPE_CHECKING:
    from app.relay.upstream.replay_buffer import ReplayBuffer

logger = logging.getLogger(__name__)


class ReplayBudget:
    def __init__(self, max_bytes: int, metrics: RelayMetrics | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.held = 0  # bytes kept by every buffer charged here (updated by the buffers)
        self.dropped = 0  # buffers dropped to stay within the budget
        self._metrics = metrics
        # Live buffers that may still be dropped (a dropped or released one leaves).
        self._buffers: set[ReplayBuffer] = set()

    def __len__(self) -> int:
        return len(self._buffers)

    def join(self, buffer: ReplayBuffer) -> None:
        self._buffers.add(buffer)

    def leave(self, buffer: ReplayBuffer) -> None:
        self._buffers.discard(buffer)

    def reclaim(self) -> None:
        """Drop the largest buffers until the bytes held are within the budget again.

        Called by a buffer whose append went over the budget: rare, so sorting every live
        buffer here costs nothing on the frames that stay within it.
        """
        for buffer in sorted(self._buffers, key=_size, reverse=True):
            if self.held <= self.max_bytes:
                break
            size = buffer.size
            buffer.drop()
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.replay_buffers_dropped_total.inc()
                self._metrics.replay_budget_bytes_held.set(self.held)
            logger.warning(
                "replay buffer dropped: the process's replay budget of %d bytes was reached; "
                "this session's next upstream switch fails unless its input is confirmed first",
                self.max_bytes,
                # The dropped buffer's session, not the one whose append went over the budget.
                extra={
                    "session": buffer.session,
                    "buffer_bytes": size,
                    "budget_held_bytes": self.held,
                },
            )

    def report(self) -> None:
        """Show the bytes held in the metrics (called every few seconds, never per frame)."""
        if self._metrics is not None:
            self._metrics.replay_budget_bytes_held.set(self.held)


def _size(buffer: ReplayBuffer) -> int:
    return buffer.size
