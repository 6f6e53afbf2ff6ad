"""One process's budget of bytes held in memory on behalf of clients, before they go upstream.

A client connection holds input the relay cannot pass on yet: the start of a frame not yet
whole (a frame is forwarded only when all of it has come) and, until the upstream's
`setupComplete`, the frames sent after the setup. Each is bounded per connection by the frame
limit (`RELAY_MAX_FRAME_BYTES`, 8 MiB), but not together: 400 clients each trickling an 8 MiB
frame, or sending one before `setupComplete`, would make the process hold 3.2 GB.

Every connection has an `InputHolder` that charges the bytes it holds and releases those it
lets go of, in plain integers (one event loop owns the process's connections). Past the budget
(`RELAY_CLIENT_INPUT_BUDGET_BYTES`), the connections holding the most are shed first until the
sum is back within it, as Envoy's overload manager resets the streams with the most buffered
(`envoy.overload_actions.reset_high_memory_stream`): the largest holders are those that sent
furthest ahead of what the relay can forward, and shedding one frees the most for everyone
else. A shed connection lets go of what it holds at once, reads nothing more, and is closed
1013 (try again later) with a reason; the metric `relay_client_input_shed_total` and a log
line say so. Live sessions hold kilobytes here: a voice frame is 2 KB and arrives whole.

Shedding runs from the event loop, never inside the charge that went over: a charge comes from
the middle of reading a frame or of a session's pump, which must not see their connection
closed under them. The process may pass the budget by what arrives in one loop turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Protocol

from app.metrics import RelayMetrics
from app.relay.closes import TRY_AGAIN_LATER

logger = logging.getLogger(__name__)

SHED_CODE = TRY_AGAIN_LATER
SHED_REASON = "the relay holds too much client input in memory: retry"


class InputOwner(Protocol):
    """The client connection an `InputHolder` is the account of."""

    def release_input(self) -> None:
        """Let go of every byte held and read no more."""

    def close_for_input(self, reason: str) -> None:
        """Close the connection `SHED_CODE` with `reason` (no session runs on it)."""


class InputBudget:
    def __init__(self, max_bytes: int, metrics: RelayMetrics | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.held = 0  # bytes held by every holder (updated by the holders)
        self.shed = 0  # connections shed to stay within the budget
        self._metrics = metrics
        self._holders: set[InputHolder] = set()  # those holding anything
        self._reclaim_scheduled = False

    def _holding(self, holder: InputHolder, holding: bool) -> None:
        if holding:
            self._holders.add(holder)
        else:
            self._holders.discard(holder)

    def _over(self) -> None:
        if not self._reclaim_scheduled:
            self._reclaim_scheduled = True
            # In a context of its own: the charge that went over is another connection's,
            # maybe another tenant's, and its session must not be stamped on these lines.
            asyncio.get_running_loop().call_soon(self.reclaim, context=contextvars.Context())

    def reclaim(self) -> None:
        """Shed the largest holders until the bytes held are within the budget again.

        Rare (a charge went over), so sorting every holder here costs nothing on the reads
        and frames that stay within it.
        """
        self._reclaim_scheduled = False
        for holder in sorted(self._holders, key=_held, reverse=True):
            if self.held <= self.max_bytes:
                break
            size = holder.held
            holder.shed()
            self.shed += 1
            if self._metrics is not None:
                self._metrics.client_input_shed_total.inc()
            logger.warning(
                "client connection shed: the process's budget of %d bytes of client input "
                "was reached and this connection held the most (%d bytes); closed %d",
                self.max_bytes,
                size,
                SHED_CODE,
                extra={
                    "session": holder.session,  # None before a session runs on it
                    "held_bytes": size,
                    "budget_held_bytes": self.held,
                },
            )
        self.report()

    def report(self) -> None:
        """Show the bytes held in the metrics (every few seconds and after a shed)."""
        if self._metrics is not None:
            self._metrics.client_input_bytes_held.set(self.held)


class InputHolder:
    """What one client connection holds, charged to the process's `InputBudget`."""

    __slots__ = ("_budget", "_owner", "close", "held", "is_shed", "session")

    def __init__(self, budget: InputBudget, owner: InputOwner) -> None:
        self._budget = budget
        self._owner = owner
        # While a session runs on the connection: the session's own end, which closes both
        # legs and says why in its log line and outcome.
        self.close: Callable[[str], None] | None = None
        self.session: str | None = None  # that session's id, for the shed's log line
        self.held = 0
        self.is_shed = False

    def charge(self, size: int) -> None:
        """`size` more bytes held (negative: let go of)."""
        if self.is_shed or not size:
            return
        budget = self._budget
        was_holding = self.held > 0
        self.held += size
        budget.held += size
        if was_holding != (self.held > 0):
            budget._holding(self, not was_holding)
        if budget.held > budget.max_bytes:
            budget._over()

    def clear(self) -> None:
        """Let go of everything: the connection is gone."""
        self.charge(-self.held)

    def shed(self) -> None:
        """Let go of everything now and close the connection (the budget's decision)."""
        self.clear()
        self.is_shed = True
        owner = self._owner
        owner.release_input()
        close = self.close
        if close is not None:
            close(SHED_REASON)
        else:
            owner.close_for_input(SHED_REASON)


def _held(holder: InputHolder) -> int:
    return holder.held
