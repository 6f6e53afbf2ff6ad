"""Session time limit (goAway, then close), idle limit, and upstream goAway passthrough."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from app.emulator import Emulator, EmulatorConfig, Faults
from tests.relay.conftest import auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of, open_session
from tests.support.relay import running_relay


async def test_session_limit_sends_goaway_then_closes_1000(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, max_session_seconds=1.0, goaway_notice_seconds=0.5)
    async with running_relay(settings) as relay:
        ws = await open_session(relay)
        goaway = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        assert goaway == {"goAway": {"timeLeft": "0.5s"}}
        code, reason = await close_of(ws)
    assert (code, reason) == (1000, "session time limit reached")


async def test_a_session_without_client_frames_closes_after_the_idle_limit(
    emulator: Emulator,
) -> None:
    settings = relay_settings(emulator, None, idle_timeout_seconds=0.5)
    async with running_relay(settings) as relay:
        ws = await open_session(relay)
        started = asyncio.get_running_loop().time()
        code, reason = await close_of(ws)
        waited = asyncio.get_running_loop().time() - started
    assert code == 1000
    assert "idle" in reason
    assert waited >= 0.4


async def test_client_frames_keep_a_session_from_going_idle(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, idle_timeout_seconds=0.6)
    async with running_relay(settings) as relay:
        ws = await open_session(relay)
        for _ in range(6):
            await asyncio.sleep(0.2)
            await ws.send(
                json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "AAAA"}}})
            )
        assert ws.close_code is None
        code, reason = await close_of(ws)
    assert "idle" in reason
    assert code == 1000


async def test_without_resumption_an_upstream_goaway_reaches_the_client_unchanged() -> None:
    config = EmulatorConfig(connection_lifetime_seconds=1.0, goaway_notice_seconds=0.5)
    async with (
        Emulator(config) as short_lived,
        running_relay(relay_settings(short_lived, None, resumption_enabled=False)) as relay,
    ):
        metrics = relay.state.metrics
        async with connect(relay.url, additional_headers=auth_headers()) as ws:
            await ws.send(json.dumps({"setup": {"model": "gemini-live-2.5-flash"}}))
            await asyncio.wait_for(ws.recv(), timeout=5)  # setupComplete
            goaway = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            assert "goAway" in goaway
            assert goaway["goAway"]["timeLeft"].endswith("s")
            code, _ = await close_of(ws)
        assert code == 1000
        for _ in range(100):
            if len(relay.state.sessions) == 0:
                break
            await asyncio.sleep(0.01)
        registry_value = metrics.goaways_total.labels("upstream")._value.get()
    assert registry_value == 1


async def test_slow_upstream_pongs_within_the_timeout_keep_the_session() -> None:
    config = EmulatorConfig(faults=Faults(pong_delay_seconds=0.4))
    async with (
        Emulator(config) as slow_pongs,
        running_relay(
            relay_settings(
                slow_pongs,
                None,
                upstream_ping_interval_seconds=0.2,
                upstream_ping_timeout_seconds=2.0,
            )
        ) as relay,
    ):
        ws = await open_session(relay)
        await asyncio.sleep(1.5)  # several pings, each answered late
        await ws.send(json.dumps({"realtimeInput": {"text": "still here?"}}))
        reply = await asyncio.wait_for(ws.recv(), timeout=5)
        assert ws.close_code is None
        assert reply
        await ws.close()


async def test_an_upstream_that_never_pongs_ends_the_session_with_1011() -> None:
    async with (
        Emulator(EmulatorConfig(faults=Faults(never_pong=True))) as silent,
        running_relay(
            relay_settings(
                silent, None, upstream_ping_interval_seconds=0.2, upstream_ping_timeout_seconds=0.5
            )
        ) as relay,
    ):
        ws = await open_session(relay)
        code, reason = await close_of(ws)
    assert code == 1011
    assert "upstream" in reason
