"""A socket that has not sent a valid setup never takes a real session's place: the admission
that starts while a setup is on its way holds a provisional slot only, and a valid setup
refused while provisional slots fill the project waits for them to lapse and tries once
more (app/quota/keeper.py). A refusal counts sessions, not sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.security.tenants_support import (
    ALPHA_KEY,
    CAPPED_KEY,
    Replicas,
    bearer,
    open_session,
    refusal,
    setup_message,
    text_turn,
    try_open,
)


async def idle_sockets(url: str, credential: str, count: int) -> list[ClientConnection]:
    """Connections that authenticate and then send nothing."""
    sockets = [await connect(url, additional_headers=bearer(credential)) for _ in range(count)]
    await asyncio.sleep(0.3)  # their admissions answered
    return sockets


async def test_sockets_that_never_send_a_setup_do_not_refuse_a_valid_one(
    two_replicas: Replicas,
) -> None:
    idle = await idle_sockets(two_replicas.url(0), CAPPED_KEY, 2)  # the project's cap is 2
    first = await open_session(two_replicas.url(1), CAPPED_KEY, setup_message())
    second = await open_session(two_replicas.url(0), CAPPED_KEY, setup_message())
    more_idle = await idle_sockets(two_replicas.url(1), CAPPED_KEY, 2)
    third = await refusal(two_replicas.url(1), CAPPED_KEY, setup_message())
    for ws in (first, second, *idle, *more_idle):
        await ws.close()
    # The count is the truth: two sessions, not the sockets beside them.
    assert third == (1013, 'RESOURCE_EXHAUSTED: project "capped" has 2 of 2 concurrent sessions')


async def test_concurrent_bad_setups_do_not_refuse_valid_ones(two_replicas: Replicas) -> None:
    bad = [
        await connect(two_replicas.url(index % 2), additional_headers=bearer(CAPPED_KEY))
        for index in range(22)
    ]
    valid = [
        await connect(two_replicas.url(index), additional_headers=bearer(CAPPED_KEY))
        for index in range(2)
    ]
    await asyncio.sleep(0.2)

    async def send_bad(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send('{"setup": {"model": "no-such-model"}}')
            await ws.recv()

    async def send_valid(ws: ClientConnection) -> dict[str, object] | tuple[int, str]:
        await ws.send(setup_message())
        try:
            first: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
        except ConnectionClosed as closed:
            received = closed.rcvd
            return (received.code, received.reason) if received else (1006, "no close frame")
        return first

    results, _ = await asyncio.gather(
        asyncio.gather(*map(send_valid, valid)), asyncio.gather(*map(send_bad, bad))
    )
    for ws in (*valid, *bad):
        await ws.close()
    assert [("setupComplete" in result) for result in results] == [True, True], results


async def test_random_connect_abort_cycles_under_the_cap_refuse_no_valid_setup(
    two_replicas: Replicas,
) -> None:
    """At most 8 clients at once under a cap of 10: not one valid setup may be refused."""
    rng = random.Random(2323)
    refused: list[tuple[int, str]] = []
    failures: list[BaseException] = []

    async def cycle(index: int) -> None:
        url = two_replicas.url(index % 2)
        try:
            ws = await connect(url, additional_headers=bearer(ALPHA_KEY), open_timeout=20)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            failures.append(exc)
            return
        phase = rng.randrange(4)
        abort = rng.random() < 0.5
        try:
            with contextlib.suppress(TimeoutError):
                if phase >= 1:
                    await ws.send(setup_message())
                if phase >= 2:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=10)
                    except ConnectionClosed as closed:
                        if closed.rcvd is not None:
                            refused.append((closed.rcvd.code, closed.rcvd.reason))
                        return
                if phase == 3:
                    await ws.send(text_turn("hello"))
                await asyncio.sleep(rng.random() * 0.01)
        finally:
            if abort:
                ws.transport.abort()
            await ws.close()

    semaphore = asyncio.Semaphore(8)

    async def bounded(index: int) -> None:
        async with semaphore:
            await cycle(index)

    await asyncio.gather(*(bounded(i) for i in range(1000)))
    assert failures == []
    assert refused == []


async def test_a_valid_setup_still_gets_its_slot_when_sent_late(two_replicas: Replicas) -> None:
    """A client slower than the provisional slot lasts is admitted when its setup comes."""
    ws = await connect(two_replicas.url(0), additional_headers=bearer(CAPPED_KEY))
    await asyncio.sleep(3)
    await ws.send(setup_message())
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
    other = await try_open(two_replicas.url(1), CAPPED_KEY, setup_message())
    third = await try_open(two_replicas.url(1), CAPPED_KEY, setup_message())
    assert "setupComplete" in first
    assert isinstance(other, ClientConnection)
    assert third == (1013, 'RESOURCE_EXHAUSTED: project "capped" has 2 of 2 concurrent sessions')
    await other.close()
    await ws.close()
