"""What a session's pumps need from the upstream side, whatever sits behind it.

One upstream connection (`UpstreamConnection`: the relay's is a `LeanConnection`; the
`websockets` asyncio client's would do) satisfies `UpstreamLeg`; so does `ResumableUpstream`,
which keeps one session alive across several upstream connections. The session never knows
which it has.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from websockets.protocol import State


class UpstreamLeg(Protocol):
    async def send(self, message: str | bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class UpstreamConnection(UpstreamLeg, Protocol):
    """One WebSocket to the upstream. A closed connection raises `websockets`'
    `ConnectionClosed` (with the received close frame) from `send` and `recv`."""

    @property
    def state(self) -> State: ...


class UpstreamSwitchFailed(Exception):
    """A switch to a new upstream connection could not be made; the session must end.

    `reason` goes into the client's 1011 close and says which failure it was; `kind` is a
    low-cardinality label for metrics ("refused", "buffer_overflow", "deadline", ...).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# Upstream closes in progress (each bounded by the upstream's close timeout), kept referenced.
_closing: set[asyncio.Future[None]] = set()


def close_in_background(upstream: UpstreamLeg, code: int, reason: str) -> None:
    """Close `upstream` without waiting: an upstream backed up behind frames a stalled client
    never read answers the close only at its close timeout, and nothing should wait for that."""
    closing = asyncio.ensure_future(upstream.close(code, reason))
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)
