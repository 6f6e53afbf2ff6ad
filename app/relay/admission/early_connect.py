"""Which sessions open their upstream connection while their quota admission answers.

A session's set-up is a chain of waits: the client's setup, the quota's answer (a Redis round
trip and several passes of the event loop), the upstream's TCP, TLS and WebSocket handshakes,
its `setupComplete`. On a busy loop each wait costs milliseconds, so run in a row they are the
relay's set-up tail. The upstream connection needs neither the setup nor the admission, so it
can open alongside them; a session the quota (or the setup policy) refuses then wastes one
upstream handshake, which is closed unused.

The waste is bounded two ways, per project and process:

- after a session that connected early is not admitted (refused by the quota or the setup
  policy, or left by its client), the project's sessions connect only once admitted, for
  `QUIET_SECONDS`: a storm of clients against a full project, or a client retrying a setup the
  policy refuses, costs handshakes only until the first refusal;
- at most `max_sessions` of the project's sessions connect early at once: no more could be
  admitted together anyway, so a storm on a fresh process wastes at most that many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from websockets.protocol import State

from app.metrics import RelayMetrics
from app.relay.upstream.upstream import UpstreamUnavailable
from app.relay.upstream.upstream_leg import UpstreamConnection, close_in_background

QUIET_SECONDS = 10.0
"""After a session that connected early is not admitted, the project's sessions connect only
once admitted, for this long."""


class EarlyConnects:
    """One per process: the early connects in flight and the latest refusal, by project."""

    def __init__(self, *, enabled: bool = True, quiet_seconds: float = QUIET_SECONDS) -> None:
        self._enabled = enabled
        self._quiet_seconds = quiet_seconds
        self._in_flight: dict[str, int] = {}
        self._refused_at: dict[str, float] = {}  # bounded by the configured projects

    def take(self, project: str, max_sessions: int) -> bool:
        """Whether a session of `project` may connect before it is admitted. When True, call
        `answered` once its admission (or its setup) has been decided."""
        if not self._enabled:
            return False
        refused_at = self._refused_at.get(project)
        if refused_at is not None and time.monotonic() - refused_at < self._quiet_seconds:
            return False
        in_flight = self._in_flight.get(project, 0)
        if in_flight >= max_sessions:
            return False
        self._in_flight[project] = in_flight + 1
        return True

    def answered(self, project: str, *, admitted: bool) -> None:
        """An early connect's session was admitted, or it was not (refused, or its client left
        first): its connection is wasted, and the project's next sessions connect late."""
        left = self._in_flight[project] - 1
        if left:
            self._in_flight[project] = left
        else:
            del self._in_flight[project]
        if not admitted:
            self._refused_at[project] = time.monotonic()


class UpstreamOpening:
    """One session's upstream connection: opening from the session's start when `early` lets
    it, else opened when the session asks for it. An early connection the session does not
    take (it was refused, or its client left) is closed."""

    __slots__ = ("_connect", "_early", "_metrics", "_undecided")  # held by every live session

    def __init__(
        self, connect: Callable[[], Awaitable[UpstreamConnection]], metrics: RelayMetrics
    ) -> None:
        self._connect = connect
        self._metrics = metrics
        self._early: asyncio.Task[UpstreamConnection] | None = None
        self._undecided: tuple[EarlyConnects, str] | None = None  # (bounds, project)

    def start_early(self, early: EarlyConnects, project: str, max_sessions: int) -> None:
        """Start connecting now, if the project's bounds allow; then call `admitted` once the
        session is admitted, and `discard` in any case when it is set up or ends."""
        if early.take(project, max_sessions):
            self._undecided = (early, project)
            self._early = asyncio.create_task(self._timed_connect(), name="upstream-connect")

    def admitted(self) -> None:
        self._decide(admitted=True)

    async def connection(self) -> UpstreamConnection:
        """The open connection (UpstreamUnavailable when it cannot be opened)."""
        early, self._early = self._early, None
        if early is None:
            return await self._timed_connect()
        self._metrics.upstream_early_connects_total.labels("used").inc()
        connection = await early
        if connection.state is not State.OPEN:
            # The upstream gave up on it while the client took its time over the setup.
            return await self._timed_connect()
        return connection

    def discard(self) -> None:
        """Cancel or close an early connection the session did not take (it was refused, or
        its client left). Not waited for: a close is bounded by the upstream's close timeout."""
        self._decide(admitted=False)
        early, self._early = self._early, None
        if early is None:
            return
        self._metrics.upstream_early_connects_total.labels("unused").inc()
        if not early.done():
            early.cancel()
        elif not early.cancelled() and early.exception() is None:
            close_in_background(early.result(), 1000, "session refused")

    def _decide(self, *, admitted: bool) -> None:
        if self._undecided is not None:
            early, project = self._undecided
            self._undecided = None
            early.answered(project, admitted=admitted)

    async def _timed_connect(self) -> UpstreamConnection:
        """Connect, counting the attempt (used or not) in the upstream's metrics."""
        started = time.perf_counter()
        try:
            connection = await self._connect()
        except UpstreamUnavailable as exc:
            self._metrics.record_upstream_failure(exc.cause, exc.status)
            raise
        self._metrics.upstream_connect_seconds.observe(time.perf_counter() - started)
        return connection
