"""At most N WebSocket handshakes in progress at once; the rest wait their turn, unread.

One event loop runs the sessions' frames and the new sessions' handshakes in turn. When a
reconnect storm brings hundreds of upgrade requests at once, every handshake step is ready
together and each loop pass runs all of them: frames of the sessions already streaming waited
behind the whole storm (600 ms added p99 for 500 sessions at once over 100 streaming). Pacing
bounds what one loop pass holds: an upgrade request waits, its socket not read, until fewer
than `limit` handshakes are in progress; a handshake is in progress from its upgrade request
until the relay has authenticated the client, given it a pending-admission slot and answered
101 (or refused it). The client's setup is not waited for inside a turn: a client that never
sends one would stall everyone's handshakes. Waiting for a pending slot is: a storm from one
credential then queues here, where waiting costs an unread socket and lasts up to the request
timeout, rather than for the credential's few pending slots, which refuse after 2 s (measured:
no 429 in a storm of 500 from one key, against 38 and 81 when the turn ended before the slot).
The price is that such a burst, or an identity provider slow to serve its keys (at most its
fetch timeout), holds turns the other handshakes queue behind, in arrival order. Frames of
live sessions never wait here, and neither do plain HTTP requests (health checks, metrics,
tokens): only upgrades.

The storm's total work does not change, only its order: with a limit well above what keeps
the CPU busy between round trips (Redis, the upstream), the storm is admitted as fast as
before. Waiting is bounded: in time (`max_wait_seconds`, then 503) and in number
(`MAX_WAITING`, beyond which an upgrade is refused at once with 503).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from weakref import WeakKeyDictionary

MAX_WAITING = 4096
"""Upgrade requests waiting per process; more are refused with 503 (each holds a socket)."""


class Turn:
    """One handshake's place: waiting, then in progress, then done. `done()` is idempotent
    and may be called from any state (a waiting turn leaves the queue)."""

    __slots__ = ("_pacer", "_start", "_timer", "state")

    def __init__(self, pacer: HandshakePacer, start: Callable[[], None]) -> None:
        self._pacer = pacer
        self._start = start  # called when a waiting turn comes
        self._timer: asyncio.TimerHandle | None = None
        self.state = "waiting"  # "waiting" -> "running" -> "done"

    def done(self) -> None:
        if self.state == "done":
            return
        was_running = self.state == "running"
        self.state = "done"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if was_running:
            self._pacer._finished()
        # A waiting turn stays in the deque, marked done: `_finished` skips it.


class HandshakePacer:
    def __init__(self, limit: int, max_wait_seconds: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.max_wait_seconds = max_wait_seconds
        self.running = 0
        self._waiting: deque[Turn] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for turn in self._waiting if turn.state == "waiting")

    def take_turn(self, start: Callable[[], None], timed_out: Callable[[], None]) -> Turn | None:
        """A turn, "running" at once when fewer than `limit` are, else "waiting": `start` is
        called when it comes, or `timed_out` after `max_wait_seconds`. None when `MAX_WAITING`
        turns wait already."""
        turn = Turn(self, start)
        if self.running < self.limit:
            # Turns wait only while `limit` run (`_finished` starts them as turns end), so
            # anything left in the queue now is a turn that ended while waiting.
            self._waiting.clear()
            turn.state = "running"
            self.running += 1
            return turn
        if len(self._waiting) >= MAX_WAITING:
            self._drop_finished()
            if len(self._waiting) >= MAX_WAITING:
                return None
        loop = asyncio.get_running_loop()
        turn._timer = loop.call_later(self.max_wait_seconds, self._expire, turn, timed_out)
        self._waiting.append(turn)
        return turn

    def _expire(self, turn: Turn, timed_out: Callable[[], None]) -> None:
        turn._timer = None
        if turn.state == "waiting":
            turn.state = "done"
            timed_out()

    def _finished(self) -> None:
        self.running -= 1
        waiting = self._waiting
        while waiting and self.running < self.limit:
            turn = waiting.popleft()
            if turn.state == "waiting":
                if turn._timer is not None:
                    turn._timer.cancel()
                    turn._timer = None
                turn.state = "running"
                self.running += 1
                turn._start()

    def _drop_finished(self) -> None:
        self._waiting = deque(turn for turn in self._waiting if turn.state == "waiting")


_pacers: WeakKeyDictionary[object, HandshakePacer] = WeakKeyDictionary()


def pacer_for(server_state: object, limit: int, max_wait_seconds: float) -> HandshakePacer:
    """The pacer shared by every connection of one uvicorn server (its `ServerState`)."""
    pacer = _pacers.get(server_state)
    if pacer is None:
        pacer = _pacers[server_state] = HandshakePacer(limit, max_wait_seconds)
    return pacer
