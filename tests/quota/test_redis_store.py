"""What only the Redis store has to get right: restarts, outages, key layout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import get_args

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from app.quota.redis_connection import connect_redis
from app.quota.redis_store import KeyKind, RedisQuotaStore, quota_key, user_key
from app.quota.types import Lease, QuotaLimits, QuotaStoreError, Renewal
from tests.support.redis_server import RedisServer

LIMITS = QuotaLimits(max_sessions=5, tokens_per_minute=1_000)
LEASES = [Lease("acme", "bob", "s-1", 1.0), Lease("acme", None, "s-2", 2.0)]
CAPS = {"acme": QuotaLimits(max_sessions=5), "other": QuotaLimits(max_sessions=5)}


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisQuotaStore]:
    store = RedisQuotaStore(connect_redis(redis_server.url), key_prefix="relay")
    yield store
    await store.aclose()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_scripts_forgotten_by_redis_are_loaded_again(
    store: RedisQuotaStore, raw: Redis
) -> None:
    await store.acquire(LEASES[0], LIMITS, 30)
    await raw.script_flush()

    assert await store.acquire(LEASES[1], LIMITS, 30) is None
    await raw.script_flush()
    renewal = await store.renew([*LEASES, Lease("other", None, "s-3", 3.0)], CAPS, 30)
    assert renewal == Renewal(restored=1, over_cap=())
    await raw.script_flush()
    assert (await store.charge("acme", 10, LIMITS)).used == 10
    assert await store.consume_use("jti", 2, time.time() + 60) == 1
    assert len(await store.sessions("acme")) == 2


async def test_after_a_restart_that_lost_the_data_renew_restores_the_leases(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    for lease in LEASES:
        await store.acquire(lease, LIMITS, 30)

    redis_server.restart()

    assert await store.sessions("acme") == []
    assert await store.held("acme") == 0
    assert await store.renew(LEASES, CAPS, 30) == Renewal(restored=2, over_cap=())
    assert await store.sessions("acme") == LEASES
    assert await store.held("acme") == 2


async def test_every_operation_raises_quota_store_error_quickly_when_redis_is_down(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    await store.ping()
    redis_server.stop()
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "acquire": lambda: store.acquire(LEASES[0], LIMITS, 30),
        "renew": lambda: store.renew(LEASES, CAPS, 30),
        "release": lambda: store.release(LEASES[0], 30),
        "charge": lambda: store.charge("acme", 1, LIMITS),
        "window": lambda: store.window("acme", LIMITS),
        "sessions": lambda: store.sessions("acme"),
        "held": lambda: store.held("acme"),
        "consume_use": lambda: store.consume_use("jti", 1, time.time() + 60),
        "ping": store.ping,
    }

    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(QuotaStoreError, match=name) as raised:
            await operation()
        assert isinstance(raised.value.__cause__, RedisError)
        assert time.monotonic() - started < 1.0, f"{name} took too long to fail"


async def test_a_project_leaves_no_lease_keys_once_its_sessions_end(
    store: RedisQuotaStore, raw: Redis
) -> None:
    await store.acquire(LEASES[0], LIMITS, 30)
    await store.acquire(LEASES[1], LIMITS, 30)
    await store.charge("acme", 10, LIMITS)

    await store.release(LEASES[0], 30)
    await store.release(LEASES[1], 30)

    tokens_key = quota_key("relay", "acme", "tokens")
    released_key = quota_key("relay", "acme", "released")
    assert sorted(await raw.keys("*")) == sorted([tokens_key, released_key])
    assert 0 < await raw.pttl(tokens_key) <= 61_000
    assert 0 < await raw.pttl(released_key) <= 30_000


async def test_lease_keys_expire_with_the_last_lease(store: RedisQuotaStore, raw: Redis) -> None:
    await store.acquire(LEASES[0], LIMITS, 0.2)

    keys = await raw.keys("*")
    assert sorted(keys) == sorted(
        [
            *(quota_key("relay", "acme", kind) for kind in ("leases", "details", "counted")),
            user_key("relay", "acme", "bob"),
        ]
    )
    for key in keys:
        assert 0 < await raw.pttl(key) <= 200


def test_every_key_of_a_project_is_in_the_projects_cluster_slot() -> None:
    for project in ("acme", "a}b", "{x}", "100%"):
        keys = [quota_key("relay", project, kind) for kind in get_args(KeyKind)]
        keys += [user_key("relay", project, user) for user in ("bob", "}", "{a}")]
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys


def test_projects_whose_names_differ_never_share_a_key() -> None:
    names = ["a}", "a%7D", "a{", "a%7B", "a", "a%"]

    keys = {quota_key("relay", name, "leases") for name in names}

    assert len(keys) == len(names)


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing(
    store: RedisQuotaStore,
) -> None:
    # Hundreds of sessions ending together release at once: none of it may look like an outage.
    limits = QuotaLimits(max_sessions=1_000, tokens_per_minute=10**9)
    leases = [Lease("burst", None, f"s-{index}", time.time()) for index in range(400)]
    refusals = await asyncio.gather(*(store.acquire(lease, limits, 30) for lease in leases))
    assert refusals == [None] * len(leases)
    await asyncio.gather(*(store.release(lease, 30) for lease in leases))
    assert await store.sessions("burst") == []


# --- the per-user record -----------------------------------------------------------------


async def test_a_users_expired_leases_leave_their_record(
    store: RedisQuotaStore, raw: Redis
) -> None:
    limits = QuotaLimits(max_sessions=100, max_sessions_per_user=5)
    for n in range(3):
        await store.acquire(Lease("acme", "bob", f"old-{n}", 1.0), limits, 0.1)
    await asyncio.sleep(0.2)

    await store.acquire(Lease("acme", "bob", "new", 2.0), limits, 30)

    assert await raw.zrange(user_key("relay", "acme", "bob"), 0, -1) == ["new"]
    assert await raw.zrange(quota_key("relay", "acme", "counted"), 0, -1) == ["new"]


async def test_leases_of_an_older_relay_version_still_count_against_the_users_cap(
    store: RedisQuotaStore, raw: Redis
) -> None:
    # During a rolling deploy an older relay writes leases and details only (no per-user
    # record). Until they are gone the per-user check counts from the details: never over.
    limits = QuotaLimits(max_sessions=100, max_sessions_per_user=2)
    leases, details = quota_key("relay", "acme", "leases"), quota_key("relay", "acme", "details")
    expiry = (await raw.time())[0] * 1000 + 30_000
    for n in range(2):
        await raw.zadd(leases, {f"old-relay-{n}": expiry})
        await raw.hset(details, f"old-relay-{n}", '{"user":"bob","started_at":1.0}')

    refusal = await store.acquire(Lease("acme", "bob", "new-relay", 2.0), limits, 30)
    assert refusal is not None
    assert refusal.kind == "user_sessions"
    assert await store.acquire(Lease("acme", "carol", "c", 2.0), limits, 30) is None

    for n in range(2):  # the older relay's sessions end: its release.lua
        await raw.zrem(leases, f"old-relay-{n}")
        await raw.hdel(details, f"old-relay-{n}")
    assert await store.acquire(Lease("acme", "bob", "new-relay", 2.0), limits, 30) is None
