"""The upstream connection opens while the quota answers (app/relay/admission/early_connect.py): an
admitted session uses it, a refused one closes it unused, and the waste stays bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig, Faults
from app.quota.keeper import PROVISIONAL_SECONDS
from app.settings import Settings
from tests.relay.conftest import MODEL, assert_reached_no_upstream, auth_headers, relay_settings
from tests.support.relay import RunningRelay, running_relay
from tests.support.scrape import scrape, value
from tests.support.wait import eventually

TEXT = {"responseModalities": ["TEXT"]}
SETUP = json.dumps({"setup": {"model": MODEL, "generationConfig": TEXT}})


async def first_answer(ws: ClientConnection) -> int | None:
    """None when the session was admitted (setupComplete), else the close code it got."""
    await ws.send(SETUP)
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006
    assert "setupComplete" in first
    return None


async def early_connects(relay: RunningRelay, outcome: str) -> float:
    samples = await scrape(f"{relay.http_url}/metrics")
    return value(samples, "relay_upstream_early_connects_total", outcome=outcome)


def settings(emulator: Emulator, **overrides: Any) -> Settings:
    return relay_settings(emulator, None, **overrides)


async def test_an_admitted_session_uses_the_connection_opened_while_the_quota_answered(
    emulator: Emulator,
) -> None:
    async with (
        running_relay(settings(emulator)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        assert await first_answer(ws) is None
        assert emulator.stats.connections_accepted == 1  # one connection, not a second one
        assert await early_connects(relay, "used") == 1
        assert await early_connects(relay, "unused") == 0


async def test_a_full_project_wastes_one_upstream_handshake_then_connects_only_when_admitted(
    emulator: Emulator,
) -> None:
    async with (
        running_relay(settings(emulator, default_max_sessions=1)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as held,
    ):
        assert await first_answer(held) is None
        for _ in range(5):
            async with connect(relay.url, additional_headers=auth_headers()) as refused:
                assert await first_answer(refused) == 1013
        # The first refused session had started connecting early (cancelled, or closed unused
        # if it got there first); the next four waited for the quota.
        assert await early_connects(relay, "unused") == 1
        assert emulator.stats.connections_accepted <= 2

        async def only_the_held_one_open() -> bool:
            return emulator.stats.connections_open == 1

        await eventually(only_the_held_one_open, within=5)


async def test_a_storm_on_a_fresh_relay_connects_early_at_most_max_sessions_at_once(
    emulator: Emulator,
) -> None:
    max_sessions = 3
    async with running_relay(settings(emulator, default_max_sessions=max_sessions)) as relay:

        async def one() -> int | None:
            async with connect(relay.url, additional_headers=auth_headers()) as ws:
                answer = await first_answer(ws)
                # Hold the slot while the rest of the storm is refused: refused while the storm's
                # first admissions were still provisional, they try again once those lapse.
                await asyncio.sleep(PROVISIONAL_SECONDS + 0.5)
                return answer

        answers = await asyncio.gather(*(one() for _ in range(12)))
        assert answers.count(None) == max_sessions
        assert answers.count(1013) == 12 - max_sessions
        # At most max_sessions connected before their admission; the admitted ones that had not
        # connected then, at most max_sessions more, once admitted.
        assert await early_connects(relay, "unused") <= max_sessions
        assert emulator.stats.connections_accepted <= 2 * max_sessions


async def test_with_early_connects_off_a_refused_setup_opens_no_upstream_connection(
    emulator: Emulator,
) -> None:
    async with (
        running_relay(settings(emulator, upstream_early_connect=False)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(json.dumps({"setup": {"model": "not-a-model-we-allow"}}))
        await asyncio.wait_for(ws.wait_closed(), timeout=10)
        assert ws.close_code == 1008
    assert emulator.stats.connections_accepted == 0
    await assert_reached_no_upstream(emulator)


async def test_an_early_connection_the_upstream_closed_before_the_setup_is_replaced() -> None:
    # The upstream ends its first connection right after the handshake, before any setup: the
    # connection a slow client's session opened early is gone when the setup comes.
    faults = Faults(close_after_frames=0, close_code=1000, close_reason="", fault_connections=1)
    async with (
        Emulator(EmulatorConfig(faults=faults)) as emulator,
        running_relay(settings(emulator)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):

        async def first_connection_closed() -> bool:
            return emulator.stats.connections_accepted == 1 and emulator.stats.connections_open == 0

        await eventually(first_connection_closed, within=5)
        assert await first_answer(ws) is None
        assert emulator.stats.connections_accepted == 2
