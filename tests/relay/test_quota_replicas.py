"""Quotas hold across three real `live-relay serve` replicas sharing one real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.relay.test_setup_and_closes import text_turn
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess

ADMIN = "admin-token-for-tests"
LEASE_TTL = 2.0


def start_replicas(
    count: int,
    redis_url: str,
    tmp_path: Path,
    lease_ttl: float = LEASE_TTL,
    env: dict[str, str] | None = None,
) -> Iterator[list[RelayProcess]]:
    full_env = {
        "RELAY_UPSTREAM": "emulator",
        "RELAY_API_KEYS": API_KEY,
        "RELAY_REDIS_URL": redis_url,
        "RELAY_ADMIN_TOKEN": ADMIN,
        "RELAY_LEASE_TTL_SECONDS": str(lease_ttl),
        "RELAY_DEFAULT_TOKENS_PER_MINUTE": "2000",
        **(env or {}),
    }
    started: list[RelayProcess] = []
    try:
        for index in range(count):
            started.append(RelayProcess(full_env, tmp_path / f"relay-{index}.log"))
        yield started
    finally:
        for relay in started:
            relay.kill()


@pytest.fixture
def replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[RelayProcess]]:
    yield from start_replicas(3, redis_server.url, tmp_path)


COMMAND_TIMEOUT = 0.5


@pytest.fixture
def impatient_replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[RelayProcess]]:
    """Two replicas whose Redis commands give up after 0.5 s instead of 2 s, with leases of 30 s:
    a lease nobody holds would stay far longer than the tests wait."""
    url = f"{redis_server.url}?socket_timeout={COMMAND_TIMEOUT}"
    yield from start_replicas(2, url, tmp_path, lease_ttl=30)


async def try_session(relay: RelayProcess) -> tuple[ClientConnection | None, int | None, str]:
    """Open a session: (connection, None, "") when admitted, else (None, close code, reason)."""
    ws = await connect(relay.url(), additional_headers=auth_headers())
    await ws.send(
        json.dumps(
            {"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}}
        )
    )
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    except ConnectionClosed as closed:
        received = closed.rcvd
        if received is None:
            raise AssertionError("closed without a close frame") from closed
        return None, received.code, received.reason
    assert "setupComplete" in first
    return ws, None, ""


async def active_sessions(relay: RelayProcess) -> int:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"http://127.0.0.1:{relay.port}/v1/projects/default/usage",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["sessions"]["active"]
    return count


async def wait_for_sessions(relay: RelayProcess, expected: int, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (count := await active_sessions(relay)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{count} sessions, not {expected}"
        await asyncio.sleep(0.1)


async def test_25_clients_at_once_on_three_replicas_get_exactly_10_sessions(
    replicas: list[RelayProcess],
) -> None:
    results = await asyncio.gather(*(try_session(replicas[i % 3]) for i in range(25)))
    admitted = [ws for ws, _, _ in results if ws is not None]
    refused = [(code, reason) for ws, code, reason in results if ws is None]
    assert len(admitted) == 10
    assert len(refused) == 15
    for code, reason in refused:
        assert code == 1013
        assert reason == 'RESOURCE_EXHAUSTED: project "default" has 10 of 10 concurrent sessions'
    assert await active_sessions(replicas[0]) == 10
    for ws in admitted:
        await ws.close()
    await wait_for_sessions(replicas[1], 0, within=5)


async def test_a_killed_replica_frees_its_slots_within_the_lease_ttl(
    replicas: list[RelayProcess],
) -> None:
    held = [await try_session(replicas[0]) for _ in range(4)]
    assert all(ws is not None for ws, _, _ in held)
    assert await active_sessions(replicas[1]) == 4
    replicas[0].process.kill()  # SIGKILL: no release, no goodbye
    started = asyncio.get_running_loop().time()
    await wait_for_sessions(replicas[1], 0, within=LEASE_TTL + 2)
    assert asyncio.get_running_loop().time() - started <= LEASE_TTL + 2
    for ws, _, _ in held:
        assert ws is not None
        await ws.close()


async def test_tokens_spent_through_one_replica_refuse_sessions_on_the_others(
    replicas: list[RelayProcess],
) -> None:
    ws, _, _ = await try_session(replicas[0])
    assert ws is not None
    # Each emulated turn costs a few dozen tokens; spend the 2,000-token budget quickly.
    turns = 0
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.send(text_turn("spend tokens " + "x" * 2000))
            turns += 1
            while b"turnComplete" not in (frame := await asyncio.wait_for(ws.recv(), 10)):
                pass
            assert isinstance(frame, bytes)
    received = closed.value.rcvd
    assert received is not None
    assert received.code == 1013
    assert received.reason.startswith("RESOURCE_EXHAUSTED:")
    assert turns >= 2
    refused_ws, code, reason = await try_session(replicas[2])
    assert refused_ws is None
    assert code == 1013
    assert "tokens per minute" in reason
    assert "retry in" in reason


async def test_1000_random_connect_abort_cycles_leave_no_slot_held(
    replicas: list[RelayProcess],
) -> None:
    rng = random.Random(1234)
    connect_failures: list[BaseException] = []

    async def cycle(index: int) -> None:
        relay = replicas[index % 3]
        try:
            ws = await connect(relay.url(), additional_headers=auth_headers(), open_timeout=20)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            connect_failures.append(exc)  # every handshake must succeed: reported below
            return
        phase = rng.randrange(4)
        abort = rng.random() < 0.5
        try:
            # A refused client is closed by the relay at any phase: later sends then fail.
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                if phase >= 1:
                    await ws.send(json.dumps({"setup": {"model": MODEL}}))
                if phase >= 2:
                    await asyncio.wait_for(ws.recv(), timeout=10)
                if phase == 3:
                    await ws.send(text_turn("hello"))
                await asyncio.sleep(rng.random() * 0.01)
        finally:
            if abort:
                ws.transport.abort()  # vanish without a close frame
            await ws.close()

    semaphore = asyncio.Semaphore(25)

    async def bounded(index: int) -> None:
        async with semaphore:
            await cycle(index)

    await asyncio.gather(*(bounded(i) for i in range(1000)))
    assert connect_failures == []
    await wait_for_sessions(replicas[0], 0, within=10)
    for relay in replicas:
        assert relay.process.poll() is None, relay.output()


async def test_redis_down_refuses_new_sessions_keeps_running_ones_and_recovers(
    replicas: list[RelayProcess], redis_server: RedisServer
) -> None:
    running, _, _ = await try_session(replicas[0])
    assert running is not None
    redis_server.stop()
    refused, code, reason = await try_session(replicas[1])
    assert refused is None
    assert (code, reason) == (1013, "UNAVAILABLE: quota store unreachable")
    # The running session goes on while the store is away.
    await running.send(text_turn("still there?"))
    while b"turnComplete" not in await asyncio.wait_for(running.recv(), 10):
        pass
    redis_server.start()  # empty: every lease was lost with the data
    await wait_for_sessions(replicas[2], 1, within=LEASE_TTL + 3)  # restored by the heartbeat
    await running.close()
    await wait_for_sessions(replicas[2], 0, within=5)
    again, code, _ = await try_session(replicas[1])
    assert again is not None, code
    await again.close()
    for relay in replicas:
        assert relay.process.poll() is None, relay.output()


async def test_a_replica_frozen_past_the_ttl_ends_its_newest_sessions_rather_than_overfill(
    replicas: list[RelayProcess],
) -> None:
    frozen, other = replicas[0], replicas[1]
    mine = []
    for _ in range(5):
        ws, code, reason = await try_session(frozen)
        assert ws is not None, (code, reason)
        mine.append(ws)
    frozen.process.send_signal(signal.SIGSTOP)  # its heartbeat stops: its leases expire
    try:
        await wait_for_sessions(other, 0, within=LEASE_TTL + 5)
        theirs = []
        for _ in range(7):
            ws, code, reason = await try_session(other)
            assert ws is not None, (code, reason)
            theirs.append(ws)
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    resumed = asyncio.get_running_loop().time()

    # Three slots were left: the three oldest sessions keep theirs, the two newest end.
    for ws in mine[3:]:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=LEASE_TTL + 10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1013,
            'RESOURCE_EXHAUSTED: slot lost in a quota store outage; project "default" is full '
            "(10 sessions)",
        )
    print(
        f"excess sessions ended {asyncio.get_running_loop().time() - resumed:.2f} s after SIGCONT"
    )
    for ws in [*mine[:3], *theirs]:
        await ws.send(text_turn("still admitted?"))
        while b"turnComplete" not in await asyncio.wait_for(ws.recv(), 10):
            pass
    assert await active_sessions(frozen) == 10
    assert "ending it" in frozen.output()
    for ws in [*mine[:3], *theirs]:
        await ws.close()


async def test_clients_refused_during_a_redis_stall_leave_no_slot_taken_once_it_resumes(
    impatient_replicas: list[RelayProcess], redis_server: RedisServer
) -> None:
    running = []
    for relay in impatient_replicas:
        ws, code, reason = await try_session(relay)
        assert ws is not None, (code, reason)
        running.append(ws)
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # frozen, not gone: its sockets stay open
    try:
        refused = await asyncio.gather(*(try_session(impatient_replicas[n % 2]) for n in range(8)))
        await asyncio.sleep(4 * COMMAND_TIMEOUT)  # the stall outlasts every command's timeout
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert [(code, reason) for _, code, reason in refused] == [
        (1013, "UNAVAILABLE: quota store unreachable")
    ] * 8

    await wait_for_sessions(impatient_replicas[0], 2, within=5)
    # Every slot the refused clients might have taken is free: eight more fit under the cap.
    more = [await try_session(impatient_replicas[n % 2]) for n in range(8)]
    assert [code for _, code, _ in more] == [None] * 8
    assert (await try_session(impatient_replicas[0]))[1] == 1013
    for ws in [*running, *(ws for ws, _, _ in more if ws is not None)]:
        await ws.close()
