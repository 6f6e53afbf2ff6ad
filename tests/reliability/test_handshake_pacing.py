"""Paced handshakes: past `RELAY_HANDSHAKE_CONCURRENCY`, an upgrade waits its turn unread.

A handshake holds its turn from the upgrade request until the application has answered it
and says so (the relay's endpoint does right after its 101). The protocol side is driven
here by a small ASGI application on the relay's own uvicorn protocols that holds its handler
until the test lets it go; the relay itself is checked to give its turn away before the
client's setup, which may never come.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator
from app.relay.client.bounded_protocols import (
    ADMISSION_EXTENSION,
    ConnectionLimits,
    RelayUvicornConfig,
)
from app.relay.client.handshake_pacing import HandshakePacer
from app.settings import Settings
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.reliability.conftest import soak_marks
from tests.reliability.test_handshakes import UPGRADE, read_until_closed, status_of
from tests.support.asgi import serving
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()

REQUEST_TIMEOUT = 1.5


class HeldHandlers:
    """An ASGI app: HTTP answers 200 at once; a WebSocket handler waits for `release`, then
    accepts and says so (the relay's scope extension), as the relay's endpoint does."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await receive()  # websocket.connect
            self.started += 1
            await self.release.wait()
            await send({"type": "websocket.accept"})
            scope["extensions"][ADMISSION_EXTENSION]["admission"].answered()
            await receive()  # until the client leaves


@pytest.fixture
async def held() -> AsyncIterator[tuple[HeldHandlers, str]]:
    app = HeldHandlers()
    defaults = ConnectionLimits.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    limits = dataclasses.replace(
        defaults, request_timeout_seconds=REQUEST_TIMEOUT, handshake_concurrency=1
    )
    config = RelayUvicornConfig(app, connection_limits=limits, log_config=None)
    async with serving(config) as port:
        yield app, f"127.0.0.1:{port}"


async def opened(url: str, **kwargs: Any) -> ClientConnection:
    return await connect(url, **kwargs)


async def answer_to(address: str, request: bytes) -> tuple[bytes, float]:
    """Send `request`; what came back before the server closed, and how long that took."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    try:
        writer.write(request)
        answer = await asyncio.wait_for(read_until_closed(reader), timeout=10)
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def test_an_upgrade_waits_while_the_handshake_ahead_holds_the_turn(
    held: tuple[HeldHandlers, str],
) -> None:
    app, address = held
    first = asyncio.create_task(opened(f"ws://{address}/"))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(opened(f"ws://{address}/"))
    await asyncio.sleep(0.5)
    assert app.started == 1  # the second upgrade is not even read: no handler runs for it
    assert not second.done()
    async with httpx.AsyncClient() as http:  # plain HTTP never waits for a turn
        answer = await asyncio.wait_for(http.get(f"http://{address}/healthz"), timeout=1)
    assert answer.status_code == 200
    app.release.set()
    async with (
        await asyncio.wait_for(first, timeout=5),
        await asyncio.wait_for(second, timeout=5),
    ):
        assert app.started == 2


async def test_a_client_that_leaves_while_waiting_does_not_hold_up_the_next(
    held: tuple[HeldHandlers, str],
) -> None:
    app, address = held
    first = asyncio.create_task(opened(f"ws://{address}/"))
    await asyncio.sleep(0.3)
    host, port = address.split(":")
    _, leaving = await asyncio.open_connection(host, int(port))
    leaving.write(UPGRADE.format(query="").encode() + b"\r\n")
    await asyncio.sleep(0.2)
    leaving.close()  # gives up while waiting for its turn
    third = asyncio.create_task(opened(f"ws://{address}/"))
    await asyncio.sleep(0.2)
    app.release.set()
    async with (
        await asyncio.wait_for(first, timeout=5),
        await asyncio.wait_for(third, timeout=5),
    ):
        pass


async def test_an_upgrade_whose_turn_does_not_come_in_time_is_answered_503(
    held: tuple[HeldHandlers, str],
) -> None:
    app, address = held
    holder = asyncio.create_task(opened(f"ws://{address}/"))
    await asyncio.sleep(0.3)
    answer, waited = await answer_to(address, UPGRADE.format(query="").encode() + b"\r\n")
    app.release.set()
    async with await asyncio.wait_for(holder, timeout=5):
        pass
    assert status_of(answer) == 503
    assert b"no handshake turn within 1.5s" in answer
    assert waited >= REQUEST_TIMEOUT


@pytest.fixture
async def relay(echo_emulator: Emulator) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(echo_emulator, None, handshake_concurrency=1)
    async with running_relay(settings) as running:
        yield running


async def set_up(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"setup": {"model": MODEL}}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in reply


async def test_the_relay_gives_its_turn_away_before_anything_that_waits(
    relay: RunningRelay,
) -> None:
    """With one turn, a client that never sends its setup does not stop the next session."""
    async with (
        await opened(relay.url, additional_headers=auth_headers()),  # sends no setup
        await asyncio.wait_for(
            opened(relay.url, additional_headers=auth_headers()), timeout=5
        ) as second,
    ):
        await set_up(second)


async def test_turns_come_in_arrival_order_and_skip_those_that_left() -> None:
    pacer = HandshakePacer(limit=2, max_wait_seconds=10)
    started: list[str] = []
    turns = {}
    for name in "abcde":
        turn = pacer.take_turn(functools.partial(started.append, name), lambda: None)
        assert turn is not None
        turns[name] = turn
    assert [name for name, turn in turns.items() if turn.state == "running"] == ["a", "b"]
    assert pacer.waiting == 3
    turns["c"].done()  # left while waiting
    turns["a"].done()
    assert started == ["d"]
    turns["b"].done()
    turns["b"].done()  # idempotent: frees one place, once
    assert started == ["d", "e"]
    assert pacer.running == 2


async def test_a_turn_that_waits_too_long_is_timed_out_and_never_started() -> None:
    pacer = HandshakePacer(limit=1, max_wait_seconds=0.1)
    events: list[str] = []
    running = pacer.take_turn(lambda: events.append("started a"), lambda: events.append("a late"))
    waiting = pacer.take_turn(lambda: events.append("started b"), lambda: events.append("b late"))
    assert running is not None
    assert waiting is not None
    await asyncio.sleep(0.3)
    running.done()
    assert events == ["b late"]
    assert pacer.running == 0
    later = pacer.take_turn(lambda: None, lambda: None)
    assert later is not None
    assert later.state == "running"
