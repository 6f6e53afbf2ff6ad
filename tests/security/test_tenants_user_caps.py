"""The per-user cap counts users as their issuer names them, and holds when a lost lease is
taken back: two replicas of `live-relay serve`, one Redis that forgets everything."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from tests.security.tenants_support import (
    ISSUER_ONE,
    ISSUER_SECRET_ONE,
    ISSUER_SECRET_TWO,
    ISSUER_TWO,
    Replicas,
    issuer_jwt,
    mint_token,
    open_session,
    refusal,
    replicas,
    setup_message,
    try_open,
)
from tests.support.redis_server import RedisServer

LEASE_TTL = 1.5  # a heartbeat every 0.5 s


@pytest.fixture
async def two_replicas(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Replicas]:
    async with (
        Emulator(EmulatorConfig()) as emulator,
        replicas(
            emulator,
            redis_server,
            tmp_path,
            env={"RELAY_LEASE_TTL_SECONDS": str(LEASE_TTL)},
        ) as running,
    ):
        yield running


def alice(issuer: str = ISSUER_ONE) -> str:
    secret = ISSUER_SECRET_ONE if issuer == ISSUER_ONE else ISSUER_SECRET_TWO
    return issuer_jwt(issuer, secret, "alice")


async def test_one_sub_from_two_issuers_is_two_users(two_replicas: Replicas) -> None:
    # The project "capped" allows each user one session.
    first = await open_session(two_replicas.url(0), alice(ISSUER_ONE), setup_message())
    same_user = await refusal(two_replicas.url(1), alice(ISSUER_ONE), setup_message())
    # A session token alice minted for herself is alice of the same issuer.
    token = await mint_token(two_replicas.http(0), alice(ISSUER_ONE), uses=1)
    via_token = await refusal(two_replicas.url(0), token, setup_message())
    other_issuer = await try_open(two_replicas.url(1), alice(ISSUER_TWO), setup_message())
    await first.close()
    if not isinstance(other_issuer, tuple):
        await other_issuer.close()
    assert not isinstance(other_issuer, tuple), f"refused: {other_issuer}"
    assert same_user[0] == via_token[0] == 1013
    assert "of 1 concurrent sessions" in same_user[1] == via_token[1]


async def test_a_lost_lease_is_not_taken_back_over_the_users_cap(
    two_replicas: Replicas, redis_server: RedisServer
) -> None:
    first = await open_session(two_replicas.url(0), alice(), setup_message())
    # Replica 0 is frozen, so no heartbeat of its can take alice's lease back before the
    # second session takes her place: the order is the test's, not the scheduler's.
    holder = two_replicas.relays[0].process.pid
    os.kill(holder, signal.SIGSTOP)
    try:
        await asyncio.to_thread(redis_server.restart)  # forgets every lease
        # Meanwhile alice starts another session elsewhere: the store has no lease of hers.
        second = await open_session(two_replicas.url(1), alice(), setup_message())
    finally:
        os.kill(holder, signal.SIGCONT)
    with pytest.raises(ConnectionClosed) as ended:
        async with asyncio.timeout(10):
            while True:
                await first.recv()
    await second.close()
    received = ended.value.rcvd
    assert received is not None
    assert received.code == 1013
    assert "slot lost" in received.reason
    assert "has its 1 sessions" in received.reason
