"""Clients that stop reading cannot hold a session, a quota slot or a socket past a limit.

Before the relay bounded its writes, 20 such clients held 20 slots 32 s into sessions limited
to 14 s: closing a session waited forever for the client's socket to become writable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from app.emulator import Emulator
from tests.relay.conftest import relay_settings
from tests.reliability.conftest import SCALE, record, soak_marks
from tests.reliability.stalled import StalledClient, in_batches, open_session, stalled_client
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()

CLIENTS = 6 * SCALE
STALLED_BY = 4  # seconds: a stalled client has backed the relay's writes up by then


@asynccontextmanager
async def relay_with(emulator: Emulator, **limits: Any) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(emulator, None, default_max_sessions=CLIENTS, **limits)
    async with running_relay(settings) as running:
        yield running


async def wait_until(condition: Callable[[], bool], within: float) -> float:
    """Seconds until `condition` held; TimeoutError after `within` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise TimeoutError(f"condition still false after {within:.1f}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def all_slots_usable(relay: RunningRelay) -> None:
    """Every quota slot can start a session again."""
    fresh = await in_batches(CLIENTS, lambda: open_session(relay.url))
    await asyncio.gather(*(ws.close() for ws in fresh))


async def stall(relay: RunningRelay) -> list[StalledClient]:
    return await in_batches(CLIENTS, lambda: stalled_client(relay.url))


async def ended_on_time(
    relay: RunningRelay,
    clients: list[StalledClient],
    limit_at: float,
    figure: str,
    measured_from: float | None = None,
) -> None:
    """The sessions end (slots free) within a generous margin of `limit_at`; the figure is
    the time from `measured_from` (default: the limit) until they had."""
    sessions = relay.state.sessions
    try:
        await wait_until(lambda: len(sessions) == 0, within=limit_at - time.monotonic() + 10)
        now = time.monotonic()
        record(figure, round(now - (measured_from or limit_at), 2))
        late = now - limit_at
        assert late < 3, f"sessions ended {late:.1f}s after their limit"
        await all_slots_usable(relay)
    finally:
        await asyncio.gather(*(client.discard() for client in clients))


async def test_session_limit_ends_stalled_sessions_on_time(echo_emulator: Emulator) -> None:
    async with relay_with(echo_emulator, max_session_seconds=3, goaway_notice_seconds=1) as relay:
        started = time.monotonic()
        clients = await stall(relay)
        await ended_on_time(relay, clients, started + 3, "session_limit_slots_free_after_s")


async def test_idle_limit_ends_stalled_sessions_on_time(echo_emulator: Emulator) -> None:
    async with relay_with(echo_emulator, idle_timeout_seconds=2) as relay:
        clients = await stall(relay)
        # The client pumps stop when the relay stops reading them; idle counts from then.
        await asyncio.wait([client.pumping for client in clients], timeout=10)
        await ended_on_time(relay, clients, time.monotonic() + 2, "idle_limit_slots_free_after_s")


async def test_a_client_that_reads_nothing_is_aborted_at_the_send_timeout(
    echo_emulator: Emulator,
) -> None:
    async with relay_with(echo_emulator, client_send_timeout_seconds=1) as relay:
        started = time.monotonic()
        clients = await stall(relay)
        # No session or idle limit is near: only the write deadline can end these sessions.
        limit_at = started + STALLED_BY + 1
        await ended_on_time(
            relay, clients, limit_at, "send_timeout_sessions_ended_after_start_s", started
        )
