"""The process's budget for replay buffers, through the real relay and the emulator.

The emulator here never confirms input while the model is silent (its idle resumption updates
are an hour apart), as reported of models that never send resumption updates: every audio
frame a session streams stays in its replay buffer until the budget takes it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging

import pytest
from websockets.asyncio.client import ClientConnection

from app.emulator import Emulator, EmulatorConfig
from app.relay.upstream.replay_budget import ReplayBudget
from tests.relay.conftest import relay_settings
from tests.relay.test_resumption import (
    frames_until_turn_complete,
    open_raw_session,
    switches,
    text_turn,
    wait_until_released,
)
from tests.relay.test_setup_and_closes import close_of
from tests.support.audio import silence
from tests.support.relay import RunningRelay, running_relay

NEVER_CONFIRMS = EmulatorConfig(resumption_update_interval_seconds=3600)
AUDIO = json.dumps(
    {
        "realtimeInput": {
            "audio": {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(silence(0.1)).decode(),  # ~4.3 KB per frame
            }
        }
    }
)
FRAME = len(AUDIO)
DROPPED_REASON = (
    "replay buffer dropped at the relay's memory budget for replay buffers: "
    "client input since the last resumable point is lost"
)


async def open_streaming_session(relay: RunningRelay) -> ClientConnection:
    """A session whose first audio frame is confirmed (the emulator confirms the first input
    at once): every frame after it stays unconfirmed."""
    ws = await open_raw_session(relay, sessionResumption={"transparent": True})
    await ws.send(AUDIO)
    async with asyncio.timeout(5):
        while True:
            update = json.loads(await ws.recv()).get("sessionResumptionUpdate", {})
            if update.get("lastConsumedClientMessageIndex") == "1":
                return ws


async def send_and_wait_until_buffered(relay: RunningRelay, ws: ClientConnection) -> None:
    """Send one audio frame and wait until the relay has charged it to the budget."""
    budget = relay.state.replay_budget
    before = (budget.held, budget.dropped)
    await ws.send(AUDIO)
    async with asyncio.timeout(5):
        while (budget.held, budget.dropped) == before:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert budget.held <= budget.max_bytes


async def test_the_largest_holders_lose_replayability_first_and_only_their_switch_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="app.relay.upstream.replay_budget")
    # Connections end after a few seconds (goAway, then 1000): every session switches once.
    switching = dataclasses.replace(
        NEVER_CONFIRMS, connection_lifetime_seconds=5, goaway_notice_seconds=0.5
    )
    budget_bytes = 11 * FRAME + FRAME // 2
    async with (
        Emulator(switching) as emulator,
        running_relay(
            relay_settings(emulator, None, resumption_buffer_budget_bytes=budget_bytes)
        ) as relay,
    ):
        a, b, c, d = [await open_streaming_session(relay) for _ in range(4)]
        for ws, frames in ((a, 5), (b, 3), (c, 2), (d, 1)):  # 11 frames: within the budget
            for _ in range(frames):
                await send_and_wait_until_buffered(relay, ws)
        budget = relay.state.replay_budget
        assert (budget.held, budget.dropped) == (11 * FRAME, 0)
        await send_and_wait_until_buffered(relay, d)  # 12: a, the largest, is dropped
        assert (budget.held, budget.dropped) == (7 * FRAME, 1)
        for _ in range(2):
            await send_and_wait_until_buffered(relay, d)  # d now holds 4 frames
        for _ in range(3):
            await send_and_wait_until_buffered(relay, b)  # 12 again: b (6 frames) goes
        assert (budget.held, budget.dropped) == (6 * FRAME, 2)
        for _ in range(3):
            await a.send(AUDIO)  # a keeps nothing any more
        await (await a.ping())
        await send_and_wait_until_buffered(relay, c)
        assert (budget.held, budget.dropped) == (7 * FRAME, 2)
        # The switch: a and b fail explicitly, c and d move on and still answer.
        outcomes = await asyncio.gather(close_of(a), close_of(b))
        async with asyncio.timeout(10):
            while switches(relay) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        for ws in (c, d):  # their input replayed, they go on
            await ws.send(text_turn("still there?"))
            assert "turnComplete" in json.dumps(await frames_until_turn_complete(ws))
        metrics = relay.state.metrics
        switched = switches(relay)
        await c.close()
        await d.close()
        await wait_until_released(relay)
        overflows = metrics.upstream_switch_failures_total.labels("buffer_overflow")
        dropped_metric = metrics.replay_buffers_dropped_total._value.get()
        held_after = budget.held
    assert list(outcomes) == [(1011, DROPPED_REASON), (1011, DROPPED_REASON)]
    assert switched == 2  # c's and d's
    assert overflows._value.get() == 2
    assert dropped_metric == 2
    assert held_after == 0  # every session's bytes came back at its end
    drops = [r for r in caplog.records if r.getMessage().startswith("replay buffer dropped")]
    assert len(drops) == 2
    assert [r.__dict__["buffer_bytes"] for r in drops] == [5 * FRAME, 6 * FRAME]


def all_taken_in(budget: ReplayBudget, sessions: int, frames: int) -> bool:
    """Whether every session's frames reached its buffer: a kept one holds them all, a
    dropped one none."""
    kept, rest = divmod(budget.held, frames * FRAME)
    return rest == 0 and kept + budget.dropped == sessions


async def test_many_sessions_streaming_at_once_stay_within_a_small_budget() -> None:
    budget_bytes = 16 * FRAME
    async with (
        Emulator(NEVER_CONFIRMS) as emulator,
        running_relay(
            relay_settings(emulator, None, resumption_buffer_budget_bytes=budget_bytes)
        ) as relay,
    ):
        sessions = [await open_streaming_session(relay) for _ in range(8)]
        budget = relay.state.replay_budget
        highest = 0

        async def stream(ws: ClientConnection) -> None:
            for _ in range(10):
                await ws.send(AUDIO)
                await asyncio.sleep(0.01)

        async def watch() -> None:
            nonlocal highest
            while True:
                highest = max(highest, budget.held)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(stream(ws) for ws in sessions))
        async with asyncio.timeout(10):
            while not all_taken_in(budget, sessions=8, frames=10):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        watcher.cancel()
        relay.state.replay_budget.report()
        gauge = relay.state.metrics.replay_budget_bytes_held._value.get()
        held, dropped = budget.held, budget.dropped
        for ws in sessions:
            await ws.close()
        await wait_until_released(relay)
    assert highest <= budget_bytes
    assert held <= budget_bytes
    assert gauge == held
    # 80 frames against room for 16: of 8 sessions of 10 frames, one at most keeps its input.
    assert dropped >= 7
