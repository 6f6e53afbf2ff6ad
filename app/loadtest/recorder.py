"""The measurements of one run, written by every session on one event loop (so no locks).

Only frames *sent* inside the measurement window (after every session has opened, for the
requested duration) count toward latency and rates: handshakes during ramp-up and the drain at
the end would otherwise blur the steady state the run is meant to describe.

A storm (`--storm N`) is recorded apart: its sessions' opening times, when it began and when its
last session had opened or given up, so the streaming sessions' latency can be cut into
"before the storm" and "during the storm".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

STORM_ERROR_PREFIX = "storm: "
"""How the kinds of errors of storm sessions begin, apart from the streaming sessions'."""


class StormRecord:
    """The sessions opened at once while the others stream."""

    def __init__(self, sessions: int) -> None:
        self.sessions = sessions
        self.started_ns: int | None = None
        self.ended_ns: int | None = None  # when its last session opened or gave up
        self.started_unix: float | None = None
        self.ended_unix: float | None = None
        self.all_settled = asyncio.Event()
        self.connect_ns: list[int] = []
        self.setup_ns: list[int] = []
        self.opened = 0
        self.failed = 0
        if sessions == 0:
            self.all_settled.set()

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()
        self.started_unix = time.time()

    def settle(self, opened: bool) -> None:
        if opened:
            self.opened += 1
        else:
            self.failed += 1
        if self.opened + self.failed == self.sessions:
            self.ended_ns = time.monotonic_ns()
            self.ended_unix = time.time()
            self.all_settled.set()

    @property
    def seconds(self) -> float:
        """From the storm's first connect to its last session settled."""
        if self.started_ns is None or self.ended_ns is None:
            return 0.0
        return (self.ended_ns - self.started_ns) / 1e9


class Recorder:
    """Counters and samples of one load-test run."""

    def __init__(self, sessions: int, storm_sessions: int = 0) -> None:
        self.sessions = sessions
        self.storm = StormRecord(storm_sessions)
        self.all_settled = asyncio.Event()  # every session opened or gave up opening
        self.window_start_ns: int | None = None
        self.window_end_ns: int | None = None
        self.window_start_unix: float | None = None
        self.window_end_unix: float | None = None
        self.latencies_ns: list[int] = []
        self.latency_sent_ns: list[int] = []  # when each of `latencies_ns` was sent
        self.connect_ns: list[int] = []
        self.setup_ns: list[int] = []
        self.opened = 0
        self.active = 0
        self.sent = 0  # every frame, window or not: for progress
        self.answered = 0
        self.window_sent = 0
        self.window_answered = 0
        self.lost = 0
        self.missed_slots = 0  # sends skipped because the generator fell a whole interval behind
        self.blocked_sends = 0  # sends skipped because the endpoint was not reading
        self.other_frames = 0
        self.errors: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()
        self._settled = 0

    def start_window(self) -> None:
        self.window_start_ns = time.monotonic_ns()
        self.window_start_unix = time.time()

    def end_window(self) -> None:
        self.window_end_ns = time.monotonic_ns()
        self.window_end_unix = time.time()

    def in_window(self, sent_ns: int) -> bool:
        start, end = self.window_start_ns, self.window_end_ns
        return start is not None and sent_ns >= start and (end is None or sent_ns < end)

    @property
    def phase(self) -> str:
        if self.window_start_ns is None:
            return "ramp-up"
        return "measuring" if self.window_end_ns is None else "draining"

    @property
    def window_seconds(self) -> float:
        if self.window_start_ns is None or self.window_end_ns is None:
            return 0.0
        return (self.window_end_ns - self.window_start_ns) / 1e9

    def session_opened(self, connect_ns: int, setup_ns: int, *, storm: bool = False) -> None:
        self.active += 1
        if storm:
            self.storm.connect_ns.append(connect_ns)
            self.storm.setup_ns.append(setup_ns)
            self.storm.settle(opened=True)
            return
        self.opened += 1
        self._settle()
        self.connect_ns.append(connect_ns)
        self.setup_ns.append(setup_ns)

    def session_failed_to_open(self, error: str, *, storm: bool = False) -> None:
        if storm:
            self.errors[STORM_ERROR_PREFIX + error] += 1
            self.storm.settle(opened=False)
            return
        self.errors[error] += 1
        self._settle()

    def _settle(self) -> None:
        self._settled += 1
        if self._settled == self.sessions:
            self.all_settled.set()

    def session_ended(self, close_code: int | None, error: str | None, unanswered: int) -> None:
        self.active -= 1
        if close_code is not None:
            self.close_codes[close_code] += 1
        if error is not None:
            self.errors[error] += 1
        self.lost += unanswered

    def frame_sent(self, sent_ns: int) -> None:
        self.sent += 1
        if self.in_window(sent_ns):
            self.window_sent += 1

    def frame_answered(self, sent_ns: int, received_ns: int) -> None:
        self.answered += 1
        if self.in_window(sent_ns):
            self.window_answered += 1
            self.latencies_ns.append(received_ns - sent_ns)
            self.latency_sent_ns.append(sent_ns)

    def latencies_sent_between(self, start_ns: int, end_ns: int) -> list[int]:
        """Round trips of the frames sent within [start_ns, end_ns)."""
        return [
            latency
            for latency, sent_ns in zip(self.latencies_ns, self.latency_sent_ns, strict=True)
            if start_ns <= sent_ns < end_ns
        ]

    def count_errors(self, errors: dict[str, int]) -> None:
        """Add errors counted elsewhere (the storm's process)."""
        self.errors.update(errors)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())
