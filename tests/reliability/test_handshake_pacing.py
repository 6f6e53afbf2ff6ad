"""Paced handshakes: past `RELAY_HANDSHAKE_CONCURRENCY`, an upgrade waits its turn unread.

A handshake holds its turn from the upgrade request until the client is authenticated and
answered. With a limit of 1 and a JWT whose issuer's keys are slow to come (the relay fetches
them on first use), the next upgrade gets no 101 until the first is answered; health checks
are answered all along; a turn that does not come within the request timeout is a 503.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.auth.keys import hash_api_key
from app.emulator import Emulator
from app.relay.handshake_pacing import HandshakePacer
from tests.auth.keys import SigningKey, claims, jwks
from tests.auth.servers import KeyServer
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.reliability.conftest import refusals, soak_marks
from tests.reliability.test_handshakes import UPGRADE, exchange, status_of
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()

REQUEST_TIMEOUT = 1.5
ISSUER = "https://login.acme.test"
AUDIENCE = "live-relay"
SIGNER = SigningKey.rsa("pacing-key")


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    server.publish("/jwks.json", jwks(SIGNER))
    server.start()
    try:
        yield server
    finally:
        server.answering.set()
        server.stop()


@pytest.fixture
async def relay(
    echo_emulator: Emulator, key_server: KeyServer, tmp_path: Path
) -> AsyncIterator[RunningRelay]:
    projects = tmp_path / "projects.toml"
    projects.write_text(
        f"""
[projects.acme]
api_keys = ["{hash_api_key(API_KEY)}"]
[[projects.acme.issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithm = "RS256"
jwks_url = "{key_server.url("/jwks.json")}"
"""
    )
    settings = relay_settings(
        echo_emulator,
        None,
        api_keys=(),
        projects_file=projects,
        handshake_concurrency=1,
        request_timeout_seconds=REQUEST_TIMEOUT,
    )
    async with running_relay(settings) as running:
        yield running


def jwt_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SIGNER.sign(claims(ISSUER, AUDIENCE))}"}


async def opened(relay: RunningRelay, headers: dict[str, str]) -> ClientConnection:
    return await connect(relay.url, additional_headers=headers)


async def set_up(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"setup": {"model": MODEL}}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in reply


async def test_an_upgrade_waits_until_the_one_ahead_is_answered(
    relay: RunningRelay, key_server: KeyServer
) -> None:
    key_server.answering.clear()  # the issuer's keys are slow: the first handshake holds on
    first = asyncio.create_task(opened(relay, jwt_headers()))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(opened(relay, auth_headers()))
    await asyncio.sleep(0.5)
    assert not first.done()
    assert not second.done()  # an API key needs no fetch, but the only turn is taken
    async with httpx.AsyncClient() as http:  # plain HTTP never waits for a turn
        health = await asyncio.wait_for(http.get(f"{relay.http_url}/healthz"), timeout=1)
    assert health.status_code == 200
    key_server.answering.set()
    async with (
        await asyncio.wait_for(first, timeout=5) as one,
        await asyncio.wait_for(second, timeout=5) as two,
    ):
        await set_up(one)
        await set_up(two)


async def test_a_client_that_waits_for_its_setup_holds_no_turn(relay: RunningRelay) -> None:
    async with (
        await opened(relay, auth_headers()),  # answered 101, sends no setup
        await asyncio.wait_for(opened(relay, auth_headers()), timeout=5) as second,
    ):
        await set_up(second)


async def test_an_upgrade_whose_turn_does_not_come_in_time_is_answered_503(
    relay: RunningRelay, key_server: KeyServer
) -> None:
    key_server.answering.clear()
    holder = asyncio.create_task(opened(relay, jwt_headers()))
    await asyncio.sleep(0.3)
    request = UPGRADE.format(query=f"?key={API_KEY}").encode() + b"\r\n"
    answer, waited = await exchange(relay, request)
    key_server.answering.set()
    (await asyncio.wait_for(holder, timeout=5)).transport.abort()
    assert status_of(answer) == 503
    assert b"no handshake turn within 1.5s" in answer
    assert waited >= REQUEST_TIMEOUT
    assert await refusals(relay, "handshakes_waiting") == 1


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
