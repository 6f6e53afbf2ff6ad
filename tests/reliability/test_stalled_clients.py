"""Clients that stop reading cannot hold a session, a quota slot or a socket past a limit.

Before the relay bounded its writes, 20 such clients held 20 slots 32 s into sessions limited
to 14 s: closing a session waited forever for the client's socket to become writable.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from app.emulator import Emulator
from app.relay.client.bounded_protocols import CLOSE_TIMEOUT_SECONDS
from tests.relay.conftest import API_KEY, MODEL, relay_settings
from tests.reliability.conftest import SCALE, aborts, record, soak_marks
from tests.reliability.stalled import StalledClient, in_batches, open_session, stalled_client
from tests.reliability.test_memory_bounds import upgrade
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
    aborted_for: str,
    measured_from: float | None = None,
) -> None:
    """The sessions end (slots free) within a generous margin of `limit_at`, every client
    counted as aborted for `aborted_for`; the figure is the time from `measured_from`
    (default: the limit) until they had."""
    sessions = relay.state.sessions
    try:
        await wait_until(lambda: len(sessions) == 0, within=limit_at - time.monotonic() + 10)
        now = time.monotonic()
        record(figure, round(now - (measured_from or limit_at), 2))
        late = now - limit_at
        assert late < 3, f"sessions ended {late:.1f}s after their limit"
        assert await aborts(relay, aborted_for) == len(clients)
        await all_slots_usable(relay)
    finally:
        await asyncio.gather(*(client.discard() for client in clients))


async def test_session_limit_ends_stalled_sessions_on_time(echo_emulator: Emulator) -> None:
    async with relay_with(echo_emulator, max_session_seconds=3, goaway_notice_seconds=1) as relay:
        started = time.monotonic()
        clients = await stall(relay)
        # Not reading, they cannot take the close frame either: aborted at the close.
        at_limit = started + 3
        await ended_on_time(
            relay, clients, at_limit, "session_limit_slots_free_after_s", "close_blocked"
        )


async def test_idle_limit_ends_stalled_sessions_on_time(echo_emulator: Emulator) -> None:
    async with relay_with(echo_emulator, idle_timeout_seconds=2) as relay:
        clients = await stall(relay)
        # The client pumps stop when the relay stops reading them; idle counts from then.
        _, pending = await asyncio.wait([client.pumping for client in clients], timeout=10)
        assert not pending, "idle would be measured from the wrong moment"
        idle_at = time.monotonic() + 2
        await ended_on_time(
            relay, clients, idle_at, "idle_limit_slots_free_after_s", "close_blocked"
        )


async def test_a_client_that_reads_nothing_is_aborted_at_the_send_timeout(
    echo_emulator: Emulator,
) -> None:
    async with relay_with(echo_emulator, client_send_timeout_seconds=1) as relay:
        started = time.monotonic()
        clients = await stall(relay)
        # No session or idle limit is near: only the write deadline can end these sessions.
        limit_at = started + STALLED_BY + 1
        await ended_on_time(
            relay,
            clients,
            limit_at,
            "send_timeout_sessions_ended_after_start_s",
            "send_timeout",
            started,
        )


async def test_a_client_that_never_answers_the_close_is_aborted_at_the_close_timeout(
    echo_emulator: Emulator,
) -> None:
    async with relay_with(echo_emulator, max_session_seconds=2, goaway_notice_seconds=1) as relay:
        # A raw client: it reads whatever arrives (the close frame too) but never answers it.
        _, writer, status = await upgrade(int(relay.http_url.rsplit(":", 1)[1]), API_KEY)
        assert status == 101
        setup = json.dumps({"setup": {"model": MODEL}}).encode()
        # A masked text frame (mask 0: the payload goes as is) with a 16-bit length.
        writer.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(setup)) + bytes(4) + setup)
        try:
            await wait_until(lambda: len(relay.state.sessions) == 1, within=10)
            # The session limit closes it; the close frame is read but never answered.
            within = 2 + CLOSE_TIMEOUT_SECONDS + 10
            deadline = time.monotonic() + within
            while await aborts(relay, "close_timeout") < 1:
                assert time.monotonic() < deadline, f"no close_timeout abort after {within}s"
                await asyncio.sleep(0.1)
            assert await aborts(relay, "close_timeout") == 1
            assert await aborts(relay, "close_blocked") == 0  # the close frame was written
        finally:
            writer.transport.abort()
