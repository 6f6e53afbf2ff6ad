"""The metrics ops alert on, read from /metrics after real sessions through a relay on Redis:
refusals, auth failures, fail-open admissions, upstream connect time, session length, and each
project's usage against its limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.emulator import Emulator
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_operations import one_turn
from tests.support.redis_server import RedisServer
from tests.support.relay import RunningRelay, running_relay
from tests.support.scrape import scrape, value

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MAX_SESSIONS = 2
TOKENS_PER_MINUTE = 50_000
LEASE_TTL = 1.5  # the usage gauges refresh every 0.5 s


@pytest.fixture
async def relay(emulator: Emulator, redis_server: RedisServer) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(
        emulator,
        None,
        redis_url=redis_server.url,
        default_max_sessions=MAX_SESSIONS,
        default_tokens_per_minute=TOKENS_PER_MINUTE,
        lease_ttl_seconds=LEASE_TTL,
    )
    async with running_relay(settings) as running:
        yield running


async def metrics(relay: RunningRelay) -> Samples:
    return await scrape(f"{relay.http_url}/metrics")


def total(samples: Samples, name: str) -> float:
    """The sum of `name` over every label set."""
    return sum(v for (sample, _), v in samples.items() if sample == name)


async def eventually(
    relay: RunningRelay, condition: Callable[[Samples], bool], within: float = 10
) -> Samples:
    deadline = asyncio.get_running_loop().time() + within
    while not condition(samples := await metrics(relay)):
        assert asyncio.get_running_loop().time() < deadline, "metrics never got there"
        await asyncio.sleep(0.1)
    return samples


async def open_session(relay: RunningRelay) -> tuple[ClientConnection, int | None]:
    """A session: the connection, and None when admitted or else the close code it got."""
    ws = await connect(relay.url, additional_headers=auth_headers())
    setup = {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
    await ws.send(json.dumps({"setup": setup}))
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    except ConnectionClosed as closed:
        return ws, closed.rcvd.code if closed.rcvd is not None else 1006
    assert "setupComplete" in first
    return ws, None


async def test_real_sessions_show_in_refusal_auth_connect_duration_and_usage_metrics(
    relay: RunningRelay,
) -> None:
    with pytest.raises(InvalidStatus):
        await connect(relay.url, additional_headers=auth_headers("lr_wrong_" + "w" * 40))
    sessions = [await open_session(relay) for _ in range(MAX_SESSIONS)]
    assert [code for _, code in sessions] == [None] * MAX_SESSIONS
    assert (await open_session(relay))[1] == 1013
    await one_turn(sessions[0][0], "spend some tokens")

    tokens_spent = total(await metrics(relay), "relay_tokens_total")
    assert tokens_spent > 0
    samples = await eventually(
        relay,
        lambda s: value(s, "relay_quota_window_tokens", project="default") == tokens_spent,
    )
    assert total(samples, "relay_auth_failures_total") == 1
    assert value(samples, "relay_quota_rejections_total", project="default", reason="sessions") == 1
    assert value(samples, "relay_sessions_total", project="default", outcome="quota_refused") == 1
    # The refused session had started its upstream connection while the quota answered: it
    # was cancelled, or closed unused if it had opened by then (and counted as a connect).
    assert value(samples, "relay_upstream_early_connects_total", outcome="unused") == 1
    connects = value(samples, "relay_upstream_connect_seconds_count")
    assert MAX_SESSIONS <= connects <= MAX_SESSIONS + 1
    assert value(samples, "relay_upstream_connect_seconds_sum") > 0
    assert value(samples, "relay_quota_sessions_held", project="default") == MAX_SESSIONS
    assert value(samples, "relay_quota_sessions_limit", project="default") == MAX_SESSIONS
    limit = value(samples, "relay_quota_tokens_per_minute_limit", project="default")
    assert limit == TOKENS_PER_MINUTE
    assert value(samples, "relay_fail_open_admissions_total", project="default") == 0
    assert not [name for name, _ in samples if name.endswith("_created")]

    for ws, _ in sessions:
        await ws.close()
    samples = await eventually(
        relay,
        lambda s: (
            value(s, "relay_quota_sessions_held", project="default") == 0
            and value(s, "relay_session_duration_seconds_count", project="default") == MAX_SESSIONS
        ),
    )
    assert value(samples, "relay_session_duration_seconds_sum", project="default") > 0


async def test_redis_away_shows_as_store_refusals_then_fail_open_admissions(
    emulator: Emulator, redis_server: RedisServer
) -> None:
    async def with_relay(fail_open: bool, check: Callable[[RunningRelay], Awaitable[None]]) -> None:
        settings = relay_settings(
            emulator, None, redis_url=redis_server.url, quota_fail_open=fail_open
        )
        async with running_relay(settings) as running:
            await check(running)

    async def refused(relay: RunningRelay) -> None:
        assert (await open_session(relay))[1] == 1013
        samples = await metrics(relay)
        assert (
            value(samples, "relay_quota_rejections_total", project="default", reason="store") == 1
        )
        assert value(samples, "relay_fail_open_admissions_total", project="default") == 0

    async def admitted(relay: RunningRelay) -> None:
        ws, code = await open_session(relay)
        assert code is None
        samples = await metrics(relay)
        assert value(samples, "relay_fail_open_admissions_total", project="default") == 1
        assert total(samples, "relay_quota_rejections_total") == 0
        await ws.close()

    redis_server.stop()
    await with_relay(False, refused)
    await with_relay(True, admitted)
