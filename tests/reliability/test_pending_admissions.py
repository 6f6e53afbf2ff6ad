"""The pending-admission caps refuse connections that hold slots, not bursts that do not."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from app.emulator import Emulator
from app.relay.admission.pending import PENDING_WAIT_SECONDS
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of
from tests.reliability.conftest import SCALE, record, refusals, soak_marks
from tests.reliability.stalled import open_session
from tests.reliability.test_memory_bounds import hold_incomplete_setup
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()

BURST = 40 * SCALE


@pytest.fixture
async def relay(echo_emulator: Emulator) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(echo_emulator, None, default_max_sessions=BURST)
    async with running_relay(settings) as running:
        yield running


def port_of(relay: RunningRelay) -> int:
    return int(relay.http_url.rsplit(":", 1)[1])


async def test_a_burst_of_connects_with_one_key_all_start_sessions(relay: RunningRelay) -> None:
    started = time.monotonic()
    sessions = await asyncio.gather(*(open_session(relay.url) for _ in range(BURST)))
    record(f"burst_of_{BURST}_one_key_all_started_s", round(time.monotonic() - started, 2))
    await asyncio.gather(*(ws.close() for ws in sessions))
    assert len(sessions) == BURST


async def test_connections_holding_their_slots_get_the_next_one_refused_429(
    relay: RunningRelay,
) -> None:
    port = port_of(relay)
    holders = await asyncio.gather(
        *(hold_incomplete_setup(port, API_KEY, 100_000) for _ in range(16))
    )
    assert [status for _, status in holders] == [101] * 16
    started = time.monotonic()
    refused, status = await hold_incomplete_setup(port, API_KEY, 100_000)
    waited = time.monotonic() - started
    refused.transport.abort()
    assert status == 429
    assert PENDING_WAIT_SECONDS - 0.1 <= waited < PENDING_WAIT_SECONDS + 5
    assert await refusals(relay, "pending_admissions") == 1
    # One holder leaves: its slot is free at once.
    holders[0][0].transport.abort()
    await asyncio.sleep(0.2)
    next_one, status = await hold_incomplete_setup(port, API_KEY, 100_000)
    assert status == 101
    for writer in (next_one, *(writer for writer, _ in holders[1:])):
        writer.transport.abort()


async def test_every_way_out_gives_the_pending_slot_back(relay: RunningRelay) -> None:
    pending = relay.state.pending
    port = port_of(relay)
    # Admitted, then closed by the client.
    ws = await open_session(relay.url)
    assert pending.pending("default") == 0
    await ws.close()
    # Refused setups (bad JSON, a model not allowed), and a client that leaves mid-setup.
    for frame in ('{"setup": ', '{"setup": {"model": "not-allowed"}}'):
        async with connect(relay.url, additional_headers=auth_headers()) as refused:
            await refused.send(frame)
            await close_of(refused)
    writer, status = await hold_incomplete_setup(port, API_KEY, 100_000)
    assert status == 101
    assert pending.pending("default") == 1
    writer.transport.abort()
    for _ in range(100):
        if pending.pending("default") == 0:
            break
        await asyncio.sleep(0.05)
    assert pending.pending("default") == 0


async def test_a_quota_refusal_gives_the_pending_slot_back(echo_emulator: Emulator) -> None:
    settings = relay_settings(echo_emulator, None, default_max_sessions=0)
    async with running_relay(settings) as relay:
        for _ in range(20):  # more than the per-credential cap: a leak would show as 429
            async with connect(relay.url, additional_headers=auth_headers()) as ws:
                await ws.send(json.dumps({"setup": {"model": MODEL}}))
                code, _ = await close_of(ws)
            assert code == 1013
        assert relay.state.pending.pending("default") == 0
