"""The sessions live in this process: drained on SIGTERM, their traffic counted into metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import NamedTuple

from app.quota.refusals import lost_slot_reason
from app.quota.types import LostSlot, QuotaLimits
from app.relay.closes import GOING_AWAY, TRY_AGAIN_LATER, Ending
from app.relay.session.session import Session, Traffic

logger = logging.getLogger(__name__)


class FrameCounts(NamedTuple):
    """The part of a session's `Traffic` that metrics count."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0

    @classmethod
    def of(cls, traffic: Traffic) -> FrameCounts:
        return cls(traffic.frames_in, traffic.bytes_in, traffic.frames_out, traffic.bytes_out)

    def minus(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(*(x - y for x, y in zip(self, other, strict=True)))

    def plus(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(*(x + y for x, y in zip(self, other, strict=True)))


class LiveSessions:
    def __init__(self) -> None:
        self._flushed: dict[Session, FrameCounts] = {}  # what metrics have of each session
        self._by_id: dict[str, Session] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._flushed)

    def add(self, session: Session, session_id: str) -> None:
        self._flushed[session] = FrameCounts()
        self._by_id[session_id] = session
        self._empty.clear()

    def end(self, session_id: str, ending: Ending) -> bool:
        """End the session with this id, if it runs here; False when it does not."""
        session = self._by_id.get(session_id)
        if session is None:
            return False
        session.end(ending)
        return True

    def slot_lost(self, lost: LostSlot, limits: QuotaLimits) -> None:
        """The quota store lost this session's slot and its project (or its user) is full: end
        it (1013) rather than run the project over its cap (`QuotaKeeper`'s `on_slot_lost`)."""
        reason = lost_slot_reason(lost, limits)
        self.end(lost.lease.session_id, Ending("relay", TRY_AGAIN_LATER, reason, "quota_lost"))

    def remove(self, session: Session, session_id: str) -> FrameCounts:
        """Forget a session; return the traffic not yet taken by `take_traffic`."""
        self._by_id.pop(session_id, None)
        flushed = self._flushed.pop(session, FrameCounts())
        if not self._flushed:
            self._empty.set()
        return FrameCounts.of(session.traffic).minus(flushed)

    def take_traffic(self) -> FrameCounts:
        """Traffic of every live session since the last call: metrics see it every few seconds."""
        total = FrameCounts()
        flushed = self._flushed
        for session, before in flushed.items():
            now = FrameCounts.of(session.traffic)
            total = total.plus(now.minus(before))
            flushed[session] = now
        return total

    async def drain(self, seconds: float) -> None:
        """goAway to every session, wait up to `seconds` for them to end, close the rest (1001)."""
        self.draining = True
        sessions = list(self._flushed)
        logger.info("draining %d live sessions for up to %.0fs", len(sessions), seconds)
        for session in sessions:
            session.send_goaway(seconds, "drain")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        if not self._flushed:
            return
        remaining = list(self._flushed)
        logger.info("closing %d sessions still open after the drain", len(remaining))
        for session in remaining:
            session.end(Ending("relay", GOING_AWAY, "server shutting down", "drain"))
        try:
            async with asyncio.timeout(5):
                await self._empty.wait()
        except TimeoutError:
            logger.warning("%d sessions did not close after the drain", len(self._flushed))
