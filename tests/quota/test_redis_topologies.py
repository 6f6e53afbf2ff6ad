"""`open_quota_store` for each way to run Redis, and the URLs it refuses."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from app.quota.keeper import QuotaKeeper
from app.quota.memory import MemoryQuotaStore
from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore, quota_key
from app.quota.store import open_quota_store
from app.quota.types import Lease, QuotaLimits, QuotaStore, Renewal
from app.settings import load_settings
from tests.quota.redis_topologies import (
    sentinel_group,
    sentinel_setup,
    single_node_cluster,
    three_master_cluster,
)
from tests.support.redis_server import RedisServer
from tests.support.wait import eventually

LIMITS = QuotaLimits(max_sessions=2, max_sessions_per_user=1, tokens_per_minute=100)
CAPS = {"acme": QuotaLimits(max_sessions=2), "globex": QuotaLimits(max_sessions=2)}
KEY_PREFIX = "relay"


async def exercise(store: QuotaStore) -> None:
    """Every operation once, checking the answers a working store gives."""
    leases = [Lease("acme", "bob", "s-1", 1.0), Lease("globex", "bob", "s-2", 2.0)]
    await store.warm()
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


# --- real HA topologies ----------------------------------------------------------------------


def projects_on_every_master(ports: list[int], per_master: int) -> dict[int, list[str]]:
    """Project names whose keys live on each master: master port -> `per_master` names."""
    with redis.Redis(port=ports[0], decode_responses=True) as node:
        ranges = [
            (int(r[0]), int(r[1]), int(r[2][1])) for r in node.execute_command("CLUSTER SLOTS")
        ]
    chosen: dict[int, list[str]] = {port: [] for port in ports}
    for index in range(10_000):
        name = f"project-{index}"
        slot = key_slot(quota_key(KEY_PREFIX, name, "leases").encode())
        owner = next(port for first, last, port in ranges if first <= slot <= last)
        if len(chosen[owner]) < per_master:
            chosen[owner].append(name)
        if all(len(names) == per_master for names in chosen.values()):
            return chosen
    raise AssertionError("no spread of project names found")


async def test_a_three_master_cluster_counts_each_project_exactly_on_whichever_master(
    tmp_path: Path,
) -> None:
    with three_master_cluster(tmp_path) as ports:
        spread = projects_on_every_master(ports, per_master=2)
        url = f"redis://127.0.0.1:{ports[0]}"
        replicas = [
            RedisQuotaStore(connect_redis(url, cluster=True), key_prefix=KEY_PREFIX)
            for _ in range(2)
        ]
        limits = QuotaLimits(max_sessions=3, tokens_per_minute=1_000)
        projects = [name for names in spread.values() for name in names]
        try:
            for store in replicas:
                # As the relay does at start-up (its heartbeat's first ping): redis-py's cluster
                # client maps the slots on its first command, and a burst racing that mapping
                # fails ('NoneType' object has no attribute 'writelines', redis-py 8.1).
                await store.ping()
            # Eight clients per project race through two replicas: exactly three get in.
            attempts = [
                Lease(project, None, f"{project}-s{n}", float(n))
                for project in projects
                for n in range(8)
            ]
            refusals = await asyncio.gather(
                *(replicas[i % 2].acquire(lease, limits, 30) for i, lease in enumerate(attempts))
            )
            admitted = [
                lease for lease, refusal in zip(attempts, refusals, strict=True) if not refusal
            ]
            for project in projects:
                assert len(await replicas[0].sessions(project)) == 3, project
                assert (await replicas[1].charge(project, 400, limits)).used == 400
            caps = dict.fromkeys(projects, limits)
            assert await replicas[1].renew(admitted, caps, 30) == Renewal(0, ())
            for port, names in spread.items():
                with redis.Redis(port=port, decode_responses=True) as node:
                    keys = node.keys("*")
                assert keys, f"master {port} holds nothing"
                assert all(any(f"{{{name}}}" in key for name in names) for key in keys)
            await asyncio.gather(
                *(replicas[i % 2].release(lease, 30) for i, lease in enumerate(admitted))
            )
            for project in projects:
                assert await replicas[0].sessions(project) == []
        finally:
            for store in replicas:
                await store.aclose()


async def test_sentinel_failover_under_live_sessions_and_admissions_loses_no_slot(
    tmp_path: Path,
) -> None:
    """The master dies (SIGKILL) while three sessions run and clients keep arriving: the
    replica takes over, admissions come back, and the count matches the sessions exactly."""
    cap = 5
    limits = QuotaLimits(max_sessions=cap, tokens_per_minute=10**9)
    with sentinel_group(tmp_path) as group:
        store = open_quota_store(load_settings(redis_url=group.url))
        observer = open_quota_store(load_settings(redis_url=group.url))
        keeper = QuotaKeeper(store, load_settings(lease_ttl_seconds=3.0))
        await keeper.start()
        live = [Lease("acme", None, f"live-{n}", float(n)) for n in range(3)]
        try:
            for lease in live:
                assert await keeper.admit(lease, limits) is None
            arrivals = (Lease("acme", None, f"new-{n}", 100.0 + n) for n in itertools.count())
            first_master = group.master_address()

            group.master.kill()
            killed = time.monotonic()
            await keeper.release(live.pop(0))  # a session ends during the outage
            refusals: list[str] = []
            while True:  # a client every 50 ms until one gets in
                lease = next(arrivals)
                refusal = await keeper.admit(lease, limits)
                if refusal is None:
                    live.append(lease)
                    break
                refusals.append(refusal.kind)
                assert time.monotonic() - killed < 60, "no admission a minute after the kill"
                await asyncio.sleep(0.05)
            back_after = time.monotonic() - killed
            print(f"failover: admissions back {back_after:.2f} s after the master died")

            assert group.master_address() != first_master
            assert set(refusals) <= {"store"}
            while len(live) < cap:  # fill the project through the new master
                lease = next(arrivals)
                if await keeper.admit(lease, limits) is None:
                    live.append(lease)
            refusal = await keeper.admit(next(arrivals), limits)
            assert refusal is not None
            assert refusal.kind == "sessions"

            async def exact() -> bool:
                held = {lease.session_id for lease in await observer.sessions("acme")}
                return keeper.pending_writes == 0 and held == {lease.session_id for lease in live}

            await eventually(exact, within=10)
            for lease in live:
                await keeper.release(lease)
            assert await observer.sessions("acme") == []
        finally:
            await keeper.aclose()
            await store.aclose()
            await observer.aclose()
