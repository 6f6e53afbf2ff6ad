"""The process's budget for client input held in memory, attacked through the real relay.

Each connection may hold up to a frame limit of input the relay cannot forward yet (a frame
still arriving, frames sent before setupComplete); many connections doing it at once must not
make the process hold their sum. The clients here hold a valid credential and stay within every
per-session limit: only the budget stops them, and only the largest holder is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator, EmulatorConfig
from app.emulator.config import Faults
from app.logs import SessionFilter
from app.relay.client.input_budget import SHED_REASON
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_resumption import frames_until_turn_complete
from tests.relay.test_setup_and_closes import close_of, setup_message, text_turn
from tests.support.relay import RunningRelay, running_relay
from tests.support.scrape import scrape, value
from tests.support.wait import eventually

KiB = 1024
# Per session: frames up to 64 KiB, and as much held before setupComplete. The process: 100 KiB.
LIMITS = {"max_frame_bytes": 64 * KiB, "client_input_budget_bytes": 100 * KiB}


def text_input(size: int) -> str:
    """A realtimeInput text frame of exactly `size` bytes."""
    empty = json.dumps({"realtimeInput": {"text": ""}})
    return json.dumps({"realtimeInput": {"text": "x" * (size - len(empty))}})


@asynccontextmanager
async def relay_with_budget(config: EmulatorConfig) -> AsyncIterator[RunningRelay]:
    async with (
        Emulator(config) as emulator,
        running_relay(relay_settings(emulator, None, **LIMITS)) as relay,
    ):
        yield relay


async def held_reaches(relay: RunningRelay, size: int) -> None:
    budget = relay.state.input_budget

    async def reached() -> bool:
        return budget.held >= size

    await eventually(reached, within=5)


async def still_served(ws: ClientConnection) -> None:
    await ws.send(text_turn("still there?"))
    frames = await frames_until_turn_complete(ws)
    assert frames[-1]["serverContent"]["turnComplete"]


async def test_input_held_for_setup_complete_is_bounded_across_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Four sessions send input while the upstream is slow to complete their setups: each holds
    under its own limit, their sum passes the process's budget, the largest holder is closed
    1013, and the other three are served once setupComplete comes."""
    caplog.set_level(logging.WARNING, logger="app.relay.client.input_budget")
    caplog.set_level(logging.INFO, logger="app.relay.endpoint")
    caplog.handler.addFilter(SessionFilter())  # as the relay's own log handler stamps lines
    slow_setup = EmulatorConfig(faults=Faults(setup_delay_seconds=3))
    async with relay_with_budget(slow_setup) as relay, AsyncExitStack() as stack:
        clients = []
        for _ in range(4):
            ws = await connect(relay.url, additional_headers=auth_headers(), compression=None)
            stack.push_async_callback(ws.close)
            await ws.send(setup_message())
            clients.append(ws)
        largest, *others = clients
        for frame in (text_input(25 * KiB), text_input(25 * KiB)):
            await largest.send(frame)
        await held_reaches(relay, 50 * KiB)
        held = 50 * KiB
        for ws in others:  # 20 KiB each: the third goes over 100 KiB
            await ws.send(text_input(20 * KiB))
            held += 20 * KiB
            if held <= LIMITS["client_input_budget_bytes"]:
                await held_reaches(relay, held)

        assert await close_of(largest) == (1013, SHED_REASON)
        budget = relay.state.input_budget
        assert budget.shed == 1
        assert budget.held <= budget.max_bytes
        for ws in others:
            assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), 10))
            await still_served(ws)
        # What they held went upstream with setupComplete: nothing is held any more.
        assert budget.held == 0
        samples = await scrape(relay.http_url + "/metrics")
        assert value(samples, "relay_client_input_shed_total") == 1
        ended = value(samples, "relay_sessions_total", project="default", outcome="input_shed")
        assert ended == 1
    [record] = [r for r in caplog.records if r.name == "app.relay.client.input_budget"]
    assert "client connection shed" in record.getMessage()
    assert record.held_bytes >= 50 * KiB  # type: ignore[attr-defined]
    # The line names the session it shed, not the one whose frame went over the budget.
    [shed_end] = [r for r in caplog.records if getattr(r, "outcome", None) == "input_shed"]
    assert record.session == shed_end.session  # type: ignore[attr-defined]


async def open_session(relay: RunningRelay) -> ClientConnection:
    """A session past setupComplete, without keepalive pings: a ping inside a half-sent frame
    would be a protocol error."""
    ws = await connect(
        relay.url, additional_headers=auth_headers(), compression=None, ping_interval=None
    )
    await ws.send(setup_message(MODEL))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), 10))
    return ws


def frame_start(payload: str, sent: int, *, fin: bool = True) -> bytes:
    """The header and first `sent` bytes of a masked text frame carrying `payload` (a zero
    mask: the payload goes as it is); without `fin`, the first fragment of a message."""
    first = (0x80 if fin else 0) | 0x1
    if len(payload) < 0x10000:
        head = struct.pack("!BBH", first, 0x80 | 126, len(payload))
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, len(payload))
    return head + bytes(4) + payload[:sent].encode()


async def test_frames_left_half_sent_are_bounded_across_sessions() -> None:
    """Three live sessions each start a frame and stop halfway: each holds under the frame
    limit, their sum passes the budget, the largest holder is closed 1013; the other two
    finish their frames later and are served as if nothing happened."""
    async with relay_with_budget(EmulatorConfig()) as relay, AsyncExitStack() as stack:
        clients = []
        for _ in range(3):
            ws = await open_session(relay)
            stack.push_async_callback(ws.close)
            clients.append(ws)
        payload = text_input(60 * KiB)
        small, medium, largest = clients
        small.transport.write(frame_start(payload, 30 * KiB))
        await held_reaches(relay, 30 * KiB)
        medium.transport.write(frame_start(payload, 40 * KiB))
        await held_reaches(relay, 70 * KiB)
        largest.transport.write(frame_start(payload, 50 * KiB))  # 120 KiB held in all

        assert await close_of(largest) == (1013, SHED_REASON)
        budget = relay.state.input_budget
        assert budget.shed == 1
        assert 70 * KiB < budget.held < 71 * KiB  # the two frames' starts, headers included
        for ws, sent in ((small, 30 * KiB), (medium, 40 * KiB)):
            ws.transport.write(payload[sent:].encode())
            await still_served(ws)
        assert budget.held == 0


async def test_messages_left_half_fragmented_are_bounded_across_sessions() -> None:
    """A fragmented message is held until its last fragment: charged like a half-sent frame."""
    async with relay_with_budget(EmulatorConfig()) as relay, AsyncExitStack() as stack:
        held, largest = [], None
        for size in (40 * KiB, 50 * KiB, 20 * KiB):  # the 20 KiB goes over 100 KiB
            ws = await open_session(relay)
            stack.push_async_callback(ws.close)
            fragment = "x" * size  # a whole frame, the first of a message still to come
            ws.transport.write(frame_start(fragment, size, fin=False))
            if size == 50 * KiB:
                largest = ws
            else:
                held.append(ws)
            if size != 20 * KiB:
                await held_reaches(relay, 90 * KiB if size == 50 * KiB else 40 * KiB)
        assert largest is not None
        assert await close_of(largest) == (1013, SHED_REASON)
        assert relay.state.input_budget.held == 60 * KiB


async def test_half_sent_setups_of_connections_without_a_session_are_bounded() -> None:
    """Before a session runs, the connection closes itself when it is shed."""
    async with relay_with_budget(EmulatorConfig()) as relay, AsyncExitStack() as stack:
        setup = json.dumps(
            {"setup": {"model": MODEL, "systemInstruction": {"parts": [{"text": "x" * 80 * KiB}]}}}
        )
        clients = []
        for sent in (40 * KiB, 70 * KiB):
            ws = await connect(
                relay.url, additional_headers=auth_headers(), compression=None, ping_interval=None
            )
            stack.push_async_callback(ws.close)
            ws.transport.write(frame_start(setup, sent))
            clients.append(ws)
            if sent == 40 * KiB:
                await held_reaches(relay, 40 * KiB)
        assert await close_of(clients[1]) == (1013, SHED_REASON)
        assert 40 * KiB < relay.state.input_budget.held < 41 * KiB
        clients[0].transport.write(setup[40 * KiB :].encode())
        assert "setupComplete" in json.loads(await asyncio.wait_for(clients[0].recv(), 10))
        assert relay.state.input_budget.held == 0
