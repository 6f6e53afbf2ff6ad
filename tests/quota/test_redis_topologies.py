"""`open_quota_store` for each way to run Redis, and the URLs it refuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.quota.memory import MemoryQuotaStore
from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore
from app.quota.store import open_quota_store
from app.quota.types import Lease, QuotaLimits, QuotaStore, Renewal
from app.settings import load_settings
from tests.quota.redis_topologies import sentinel_setup, single_node_cluster
from tests.support.redis_server import RedisServer

LIMITS = QuotaLimits(max_sessions=2, max_sessions_per_user=1, tokens_per_minute=100)
CAPS = {"acme": 2, "globex": 2}


async def exercise(store: QuotaStore) -> None:
    """Every operation once, checking the answers a working store gives."""
    leases = [Lease("acme", "bob", "s-1", 1.0), Lease("globex", "bob", "s-2", 2.0)]
    await store.ping()
    for lease in leases:
        assert await store.acquire(lease, LIMITS, 30) is None
    refusal = await store.acquire(Lease("acme", "bob", "s-3", 3.0), LIMITS, 30)
    assert refusal is not None
    assert refusal.kind == "user_sessions"
    assert await store.renew(leases, CAPS, 30) == Renewal(restored=0, over_cap=())
    assert (await store.charge("acme", 100, LIMITS)).spent
    assert (await store.window("globex", LIMITS)).used == 0
    assert await store.consume_use("jti", 1, time.time() + 60) == 0
    await store.release(leases[0], 30)
    assert await store.sessions("acme") == []
    assert await store.sessions("globex") == [leases[1]]


async def test_without_a_redis_url_the_store_is_this_processs_memory() -> None:
    store = open_quota_store(load_settings(redis_url=None))

    assert isinstance(store, MemoryQuotaStore)
    await exercise(store)


async def test_a_redis_url_opens_a_pooled_redis_store_under_the_key_prefix(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url
    store = open_quota_store(load_settings(redis_url=url, quota_key_prefix="tenant-7"))
    try:
        assert isinstance(store, RedisQuotaStore)
        await exercise(store)
        raw = Redis.from_url(url, decode_responses=True)
        assert {key.split(":")[0] async for key in raw.scan_iter()} == {"tenant-7"}
        await raw.aclose()
    finally:
        await store.aclose()


async def test_a_sentinel_url_finds_the_master_with_the_urls_password(tmp_path: Path) -> None:
    with sentinel_setup(tmp_path, password="s3cret") as sentinel_port:
        store = open_quota_store(
            load_settings(redis_url=f"redis+sentinel://:s3cret@127.0.0.1:{sentinel_port}/mymaster")
        )
        try:
            await exercise(store)
        finally:
            await store.aclose()


async def test_a_cluster_url_runs_every_script_and_pipeline_in_cluster_mode(
    tmp_path: Path,
) -> None:
    with single_node_cluster(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}"
        store = open_quota_store(load_settings(redis_url=url, redis_cluster=True))
        try:
            await exercise(store)
            # Scripts are reloaded per node after a restart; a pipelined renew must cope too.
            raw = RedisCluster.from_url(url)
            await raw.script_flush()
            await raw.aclose()
            renewal = await store.renew([Lease("acme", None, "s-9", 9.0)], CAPS, 30)
            assert renewal == Renewal(restored=1, over_cap=())
        finally:
            await store.aclose()


@pytest.mark.parametrize(
    ("url", "cluster", "complaint"),
    [
        ("http://127.0.0.1:6379", False, "must start with redis://"),
        ("redis+sentinel://127.0.0.1:26379", False, "names the service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/zero", False, "names the service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster?ssl=true", False, "no query options"),
        ("redis+sentinel://127.0.0.1:port/mymaster", False, "expected host:port"),
        ("redis+sentinel://127.0.0.1:26379/mymaster", True, "cannot be combined"),
    ],
)
def test_a_bad_redis_url_is_refused_with_a_message_naming_the_fix(
    url: str, cluster: bool, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        connect_redis(url, cluster=cluster)
