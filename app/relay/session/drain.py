"""SIGTERM drains the live sessions before uvicorn shuts the process down.

uvicorn's own SIGTERM handling closes every WebSocket at once (1012). The relay first wants to
tell clients (goAway), give them `drain_seconds` to finish, and close the rest with 1001. The
handler is installed from the app's lifespan, so it runs in every worker process; it calls
uvicorn's handler once the drain is over, and uvicorn then shuts down as usual.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from app.relay.session.registry import LiveSessions

logger = logging.getLogger(__name__)

SignalHandler = Callable[[int, FrameType | None], Any]


def install_drain_on_sigterm(sessions: LiveSessions, drain_seconds: float) -> None:
    """Route SIGTERM through a drain when running under a server that handles it (uvicorn)."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        return  # no server owns SIGTERM here (e.g. an in-process test client): nothing to wrap
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then_stop() -> None:
        try:
            await sessions.drain(drain_seconds)
        finally:
            previous(signal.SIGTERM, None)

    def start_drain() -> None:
        task = loop.create_task(drain_then_stop())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if sessions.draining:  # a second SIGTERM: stop without waiting any longer
            previous(signum, frame)
            return
        logger.info("SIGTERM: draining before shutdown")
        sessions.draining = True
        # A signal handler runs inside whatever code the main thread was running, often a
        # session's task: a fresh context keeps that session's id off the drain's log lines.
        loop.call_soon_threadsafe(start_drain, context=contextvars.Context())

    signal.signal(signal.SIGTERM, on_sigterm)
