"""The fast lane: a frame crosses the relay inside the callback that read it.

On the generic path a frame read from one leg is a message handed to a task (an ASGI message
on uvicorn's queue, or a future of the upstream connection), the task wakes, and it writes
the frame to the other leg through another `await`. That is two wake-ups of the event loop,
two pauses and resumes of reading, and a dict or future per frame: about a fifth of a frame's
CPU (docs/performance.md, "Where a frame's CPU goes").

Once a session is running, each leg offers every frame it reads to the session first (its
*sink*). The session takes it when nothing is ahead of it: its pump for that direction is
waiting to read and the other leg can take a write at once. It then runs the same per-frame
rules as the pump (`Session`) and writes the frame to the other leg before the callback
returns. Anything else (a leg backed up, a frame the relay must act on, a session ending)
is declined and takes the generic path, so every bound and every rule stays where it was:
the fast lane is an optimisation of the common case, never a second set of rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

# Offered each message a leg reads (a text frame as str, a binary one as bytes): True when
# the session took it, False to let it take the generic path.
MessageSink = Callable[[str | bytes], bool]


class Lane(Protocol):
    """What the fast lane needs of a leg."""

    @property
    def writable_now(self) -> bool:
        """`send_now` may be called: the leg is open and its write buffer is not backed up."""
        ...

    def send_now(self, message: str | bytes) -> int:
        """Write one message (str: a text frame, bytes: binary) to the leg now; return its
        size in bytes (0 when the leg kept it to write later)."""
        ...

    def set_sink(self, sink: MessageSink | None) -> None:
        """Offer each message read from now on to `sink`, or stop offering (None)."""
        ...


def lane_of(leg: object) -> Lane | None:
    """`leg` when it has a fast lane, else None. (Duck-typed: `isinstance` against a
    runtime-checkable Protocol costs about 11 µs, paid at every session's start.)"""
    return cast(Lane, leg) if callable(getattr(leg, "set_sink", None)) else None


class LaneOver:
    """The fast lane of a leg that wraps another one (sealed handles, the Gemini dialect,
    estimated usage): writes go to the wrapped leg's lane as `outgoing` makes them, and each
    message the wrapped leg offers goes on to the session's sink unless the wrapper
    `declines` it. A declined message reaches the wrapper's `recv`, which does to it what it
    does on the generic path: the wrapper's rules hold on both paths, and a wrapper that
    looks at every frame no longer costs its sessions the lane.

    A subclass names the wrapper first and this class after it, so the wrapper's own
    `outgoing` (the one its `send` uses) is the one found; it sets `_lane` (the wrapped
    leg's) and `_sink` (None) when it is made.
    """

    _lane: Lane
    _sink: MessageSink | None

    def declines(self, message: str | bytes) -> bool:
        """Whether a message from upstream must take the wrapper's `recv`."""
        raise NotImplementedError

    def outgoing(self, message: str | bytes) -> str | bytes | None:
        """What a client message becomes upstream, as the wrapper's `send` makes it (None:
        nothing is sent)."""
        raise NotImplementedError

    @property
    def writable_now(self) -> bool:
        return self._lane.writable_now

    def send_now(self, message: str | bytes) -> int:
        outgoing = self.outgoing(message)
        return 0 if outgoing is None else self._lane.send_now(outgoing)

    def set_sink(self, sink: MessageSink | None) -> None:
        self._sink = sink
        self._lane.set_sink(None if sink is None else self._through)

    def _through(self, message: str | bytes) -> bool:
        sink = self._sink
        return sink is not None and not self.declines(message) and sink(message)
