"""Session duration caps: without context compression a session's context fills up.

Vertex documents the caps (about 15 minutes with audio, 2 minutes with audio and video, none
with `contextWindowCompression`); it does not say whether they count across resumptions. The
cap follows the context, and resumption restores the context, so by default it counts the
whole conversation ("conversation"); "connection" restarts it on every connection.

How a capped session ends is not documented either. What is reported of the service: a goAway,
then a 1011 close "Deadline expired before operation could complete.".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.emulator.config import EmulatorConfig

DEADLINE_EXPIRED = "Deadline expired before operation could complete."


@dataclass
class MediaClock:
    """When a session began and what media it has received: what its cap depends on."""

    started_at: float = field(default_factory=time.monotonic)
    audio: bool = False
    video: bool = False
    # Set whenever audio or video is seen for the first time (the cap may start or shrink).
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, *, audio: bool = False, video: bool = False) -> None:
        if (audio and not self.audio) or (video and not self.video):
            self.audio, self.video = self.audio or audio, self.video or video
            self.changed.set()


# A goAway that comes late still gives at least this much notice (a loaded machine must not
# turn a warning into a bare close).
MIN_NOTICE_SECONDS = 0.1


def notice_left(remaining: float, notice: float) -> float:
    """The `timeLeft` of a goAway sent `remaining` seconds before an end due with `notice`
    seconds of warning: 0 when the end is already due (then no goAway is sent)."""
    if remaining <= 0:
        return 0.0
    return max(MIN_NOTICE_SECONDS, min(notice, round(remaining, 1)))


def cap_seconds(clock: MediaClock, config: EmulatorConfig) -> float | None:
    """The cap that applies now (None: none yet), compression aside."""
    if clock.video and config.video_session_cap_seconds is not None:
        return config.video_session_cap_seconds
    if (clock.audio or clock.video) and config.audio_session_cap_seconds is not None:
        return config.audio_session_cap_seconds
    return None


async def enforce_cap(
    clock: MediaClock,
    config: EmulatorConfig,
    go_away: Callable[[float], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
) -> None:
    """Wait until the session's cap is near, warn with a goAway, then close. Runs until
    cancelled if no cap ever applies."""
    while True:
        cap = cap_seconds(clock, config)
        deadline = None if cap is None else clock.started_at + cap
        wait = None
        if deadline is not None:
            wait = max(
                0.0, deadline - min(config.goaway_notice_seconds, cap or 0) - time.monotonic()
            )
        try:
            async with asyncio.timeout(wait):
                await clock.changed.wait()
            clock.changed.clear()  # new media: the cap may have started or shrunk
        except TimeoutError:
            break
    assert deadline is not None
    time_left = notice_left(deadline - time.monotonic(), config.goaway_notice_seconds)
    if time_left > 0:
        await go_away(time_left)
        await asyncio.sleep(time_left)
    await close()
