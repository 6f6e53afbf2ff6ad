"""The keeper's policy on a real Redis that restarts, disappears and freezes."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from app.quota.keeper import WARM_UP_SECONDS, QuotaKeeper, SlotLostHook
from app.quota.memory import MemoryQuotaStore
from app.quota.redis_connection import WARM_CONNECTIONS, connect_redis
from app.quota.redis_store import RedisQuotaStore
from app.quota.refusals import STORE_UNAVAILABLE
from app.quota.types import Lease, LostSlot, QuotaLimits, QuotaStore, Refusal
from app.settings import load_settings
from tests.support.redis_server import RedisServer
from tests.support.wait import eventually

TTL = 0.6  # the heartbeat beats every 0.2 s
ONE_BEAT = TTL / 3 + 0.8  # with room for a slow, busy test machine
LIMITS = QuotaLimits(max_sessions=5, tokens_per_minute=1_000)


def lease(number: int) -> Lease:
    return Lease("acme", None, f"session-{number}", started_at=float(number))


async def held(store: QuotaStore) -> set[str]:
    return {lease.session_id for lease in await store.sessions("acme")}


def _nothing_ends(lost: LostSlot, limits: QuotaLimits) -> None:
    raise AssertionError(f"{lost.lease.session_id} lost its slot")


@asynccontextmanager
async def running_keeper(
    store: QuotaStore,
    *,
    ttl: float = TTL,
    fail_open: bool = False,
    on_slot_lost: SlotLostHook = _nothing_ends,
) -> AsyncIterator[QuotaKeeper]:
    keeper = QuotaKeeper(
        store,
        load_settings(lease_ttl_seconds=ttl, quota_fail_open=fail_open),
        on_slot_lost=on_slot_lost,
    )
    await keeper.start()
    try:
        yield keeper
    finally:
        await keeper.aclose()


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisQuotaStore]:
    store = RedisQuotaStore(connect_redis(redis_server.url), key_prefix="relay")
    yield store
    await store.aclose()


async def save_and_stop(redis_server: RedisServer) -> None:
    """Stop Redis keeping its data for the next start: an outage, not a data loss."""
    client = Redis.from_url(redis_server.url)
    await client.save()
    await client.aclose()
    redis_server.stop()


# --- a reachable store ---------------------------------------------------------------------


async def test_an_admitted_session_holds_its_slot_until_released() -> None:
    store = MemoryQuotaStore()
    async with running_keeper(store) as keeper:
        assert await keeper.admit(lease(0), QuotaLimits(max_sessions=1)) is None
        refusal = await keeper.admit(lease(1), QuotaLimits(max_sessions=1))
        assert refusal is not None
        assert refusal.kind == "sessions"
        assert keeper.live_leases == [lease(0)]

        await keeper.release(lease(0))

        assert keeper.live_leases == []
        assert await held(store) == set()


async def test_the_heartbeat_keeps_leases_alive_well_past_their_ttl(
    store: RedisQuotaStore,
) -> None:
    async with running_keeper(store) as keeper:
        await keeper.admit(lease(0), LIMITS)

        await asyncio.sleep(3 * TTL)

        assert await held(store) == {"session-0"}


async def test_charge_says_when_the_project_goes_over_its_budget(store: RedisQuotaStore) -> None:
    async with running_keeper(store) as keeper:
        assert await keeper.charge("acme", 999, LIMITS) is False
        assert await keeper.charge("acme", 1, LIMITS) is True
        refusal = await keeper.admit(lease(0), LIMITS)
        assert refusal is not None
        assert refusal.kind == "tokens"


async def test_closing_the_keeper_releases_the_leases_still_held(
    store: RedisQuotaStore,
) -> None:
    async with running_keeper(store, ttl=30) as keeper:
        await keeper.admit(lease(0), LIMITS)
        await keeper.admit(lease(1), LIMITS)

    assert await held(store) == set()


# --- Redis restarts and outages --------------------------------------------------------------


async def test_after_redis_loses_its_data_the_heartbeat_restores_the_leases(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    async with running_keeper(store) as keeper:
        for number in range(3):
            await keeper.admit(lease(number), LIMITS)

        redis_server.restart()
        assert await held(store) == set()

        await eventually(lambda: _holds(store, 3), within=ONE_BEAT)


async def test_while_redis_is_down_new_sessions_are_refused_and_running_ones_restored_after(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    async with running_keeper(store) as keeper:
        await keeper.admit(lease(0), LIMITS)
        redis_server.stop()

        refusal = await keeper.admit(lease(1), LIMITS)

        assert refusal == Refusal("UNAVAILABLE: quota store unreachable", "store")
        healthy_during_outage = keeper.store_healthy
        assert keeper.live_leases == [lease(0)]
        await asyncio.sleep(TTL / 3)  # a heartbeat fails meanwhile: no crash
        redis_server.start()
        await eventually(lambda: _holds(store, 1), within=ONE_BEAT)
        assert await held(store) == {"session-0"}
        assert (healthy_during_outage, keeper.store_healthy) == (False, True)
        assert keeper.fail_open_admissions == 0


async def test_fail_open_admits_while_redis_is_down_says_so_and_records_the_lease_later(
    store: RedisQuotaStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_keeper(store, fail_open=True) as keeper:
        redis_server.stop()

        with caplog.at_level(logging.WARNING, logger="app.quota.keeper"):
            admitted = await keeper.admit(lease(0), LIMITS)

        assert admitted is None
        assert keeper.fail_open_admissions == 1
        assert "RELAY_QUOTA_FAIL_OPEN" in caplog.text
        redis_server.start()
        await eventually(lambda: _holds(store, 1), within=ONE_BEAT)


async def test_a_release_while_redis_is_unreachable_is_applied_when_it_returns(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    # A long TTL: the released lease must go because it was released, not because it expired.
    async with running_keeper(store, ttl=3.0) as keeper:
        await keeper.admit(lease(0), LIMITS)
        await keeper.admit(lease(1), LIMITS)
        await save_and_stop(redis_server)

        await keeper.release(lease(0))  # does not raise

        redis_server.start()
        await eventually(lambda: _holds(store, 1), within=2.0)  # it would expire after 3 s
        assert await held(store) == {"session-1"}


async def test_tokens_charged_while_redis_is_down_are_counted_when_it_returns(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    async with running_keeper(store) as keeper:
        redis_server.stop()

        assert await keeper.charge("acme", 700, LIMITS) is False
        assert await keeper.charge("acme", 300, LIMITS) is False

        redis_server.start()

        async def window_full() -> bool:
            return (await store.window("acme", LIMITS)).used == 1_000

        await eventually(window_full, within=ONE_BEAT)
        await asyncio.sleep(TTL / 3)  # another beat: nothing is charged twice
        assert (await store.window("acme", LIMITS)).used == 1_000


async def test_store_healthy_follows_reachability(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    redis_server.stop()
    async with running_keeper(store) as keeper:
        assert keeper.store_healthy is False

        redis_server.start()

        async def healthy() -> bool:
            return keeper.store_healthy

        await eventually(healthy, within=ONE_BEAT)


async def test_after_redis_restarts_empty_and_fills_up_the_newest_sessions_lose_their_slot(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    ended: list[Lease] = []
    async with running_keeper(
        store, on_slot_lost=lambda lost, _: ended.append(lost.lease)
    ) as keeper:
        for number in range(4):
            assert await keeper.admit(lease(number), LIMITS) is None
        redis_server.restart()
        # Before this relay's next beat, another relay admits three sessions into the empty store.
        other = [Lease("acme", None, f"elsewhere-{n}", 100.0 + n) for n in range(3)]
        for newcomer in other:
            assert await store.acquire(newcomer, LIMITS, 30) is None

        await eventually(lambda: _holds(store, LIMITS.max_sessions), within=ONE_BEAT)
        await eventually(lambda: _ended(ended, 2), within=ONE_BEAT)

        assert ended == [lease(2), lease(3)]  # the newest, in order
        assert keeper.live_leases == [lease(0), lease(1)]
        assert keeper.slots_lost == 2
        assert await held(store) == {"session-0", "session-1", *(o.session_id for o in other)}


# --- stalls and cancellation -----------------------------------------------------------------


async def test_admissions_given_up_during_a_redis_stall_leave_no_lease_once_it_resumes(
    redis_server: RedisServer,
) -> None:
    """Redis frozen (SIGSTOP) longer than the command timeout while clients keep arriving: the
    acquires it runs when it resumes must not leave leases nobody holds."""
    assert redis_server.process is not None
    timeout = 0.3
    stalled = RedisQuotaStore(
        connect_redis(f"{redis_server.url}?socket_timeout={timeout}"), key_prefix="relay"
    )
    observer = RedisQuotaStore(connect_redis(redis_server.url), key_prefix="relay")
    try:
        async with running_keeper(stalled, ttl=30) as keeper:
            for number in range(2):
                assert await keeper.admit(lease(number), LIMITS) is None
            await stalled.ping()
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                refusals = await asyncio.gather(
                    *(keeper.admit(lease(number), LIMITS) for number in range(2, 10))
                )
                await asyncio.sleep(4 * timeout)  # the stall outlasts the timeout several times
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
            resumed = time.monotonic()

            assert set(refusals) == {Refusal("UNAVAILABLE: quota store unreachable", "store")}
            await eventually(lambda: _exact(keeper, observer, {"session-0", "session-1"}), 10)
            print(f"exact {time.monotonic() - resumed:.2f} s after Redis resumed")
            await asyncio.sleep(3 * TTL)  # nothing late turns up afterwards
            assert await held(observer) == {"session-0", "session-1"}
    finally:
        await stalled.aclose()
        await observer.aclose()


# --- cancellation ----------------------------------------------------------------------------


async def test_an_admission_cancelled_while_redis_records_it_leaves_no_slot_taken(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    assert redis_server.process is not None
    async with running_keeper(store, ttl=30) as keeper:
        await store.ping()  # a pooled connection is ready: the command below goes out at once
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            admission = asyncio.create_task(keeper.admit(lease(0), LIMITS))
            await asyncio.sleep(0.2)  # the script is in Redis's socket, waiting to run
            admission.cancel()
            with pytest.raises(asyncio.CancelledError):
                await admission
        finally:
            redis_server.process.send_signal(signal.SIGCONT)

        raw = Redis.from_url(redis_server.url, decode_responses=True)

        async def acquired_then_released() -> bool:
            stats = await raw.info("commandstats")  # acquire.lua and release.lua both ran
            return stats.get("cmdstat_evalsha", {}).get("calls", 0) >= 2 and not await held(store)

        try:
            await eventually(acquired_then_released, within=1.5)
        finally:
            await raw.aclose()
        assert keeper.live_leases == []


async def test_an_admission_abandoned_before_redis_answers_gives_its_slot_back_after(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    assert redis_server.process is not None
    async with running_keeper(store, ttl=30) as keeper:
        await store.ping()
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            admission = keeper.admit_in_background(lease(0), LIMITS)
            await asyncio.sleep(0.2)  # the script is in Redis's socket, waiting to run
            keeper.abandon(admission, lease(0))  # its client left
            assert not admission.done()
        finally:
            redis_server.process.send_signal(signal.SIGCONT)

        assert await admission is None  # it ran to its answer: admitted...
        await eventually(lambda: _exact(keeper, store, set()), within=2)  # ...and given back
        assert keeper.live_leases == []


async def test_an_admitted_slot_abandoned_before_use_is_given_back(store: RedisQuotaStore) -> None:
    async with running_keeper(store, ttl=30) as keeper:
        admission = keeper.admit_in_background(lease(0), LIMITS)
        assert await admission is None
        keeper.abandon(admission, lease(0))  # its setup was refused
        await eventually(lambda: _exact(keeper, store, set()), within=2)
        assert keeper.live_leases == []


async def _ended(ended: list[Lease], count: int) -> bool:
    return len(ended) == count


async def _exact(keeper: QuotaKeeper, store: QuotaStore, expected: set[str]) -> bool:
    return keeper.pending_writes == 0 and await held(store) == expected


async def _holds(store: QuotaStore, count: int) -> bool:
    return len(await held(store)) == count


# --- storms (issue 15) -------------------------------------------------------------------------


async def test_a_storm_larger_than_the_pool_is_all_admitted_none_as_a_store_outage(
    redis_server: RedisServer,
) -> None:
    # 300 admissions at once through 8 pooled connections that wait 50 ms at most: one per
    # connection, most would be refused "quota store unreachable" with Redis up.
    store = RedisQuotaStore(
        connect_redis(redis_server.url, pool_size=8, pool_wait=0.05), key_prefix="relay"
    )
    limits = QuotaLimits(max_sessions=300, tokens_per_minute=10**9)
    storm = [Lease("acme", f"user-{n % 30}", f"storm-{n}", float(n)) for n in range(300)]
    try:
        async with running_keeper(store, ttl=30) as keeper:
            refusals = await asyncio.gather(*(keeper.admit(one, limits) for one in storm))

            assert refusals == [None] * 300
            assert keeper.store_healthy
            assert len(await held(store)) == 300
            await asyncio.gather(*(keeper.release(one) for one in storm))
            assert await held(store) == set()
    finally:
        await store.aclose()


async def test_each_admission_of_a_storm_gets_its_own_answer(store: RedisQuotaStore) -> None:
    # Coalesced into shared pipelines, the per-user cap still refuses exactly each user's extra.
    limits = QuotaLimits(max_sessions=1_000, max_sessions_per_user=20, tokens_per_minute=10**9)
    storm = [Lease("acme", f"user-{n % 10}", f"storm-{n}", float(n)) for n in range(300)]
    async with running_keeper(store, ttl=30) as keeper:
        refusals = await asyncio.gather(*(keeper.admit(one, limits) for one in storm))

        admitted = Counter(one.user for one, r in zip(storm, refusals, strict=True) if r is None)
        assert admitted == dict.fromkeys((f"user-{u}" for u in range(10)), 20)
        assert {r.kind for r in refusals if r is not None} == {"user_sessions"}
        assert len(await held(store)) == 200


async def test_start_opens_the_pools_connections_before_any_session(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    # An observer that itself sends nothing but its commands (no HELLO, no SETINFO).
    admin = Redis.from_url(redis_server.url, decode_responses=True, protocol=2, driver_info=None)
    try:
        async with running_keeper(store):
            clients = await admin.client_list()
            stats = await admin.info("stats")
    finally:
        await admin.aclose()

    mine = [client for client in clients if client["cmd"] != "client|list"]
    assert len(mine) >= WARM_CONNECTIONS
    # No CLIENT SETINFO, HELLO or maintenance-notifications handshake on connect: Redis 7.2+
    # would list a lib-name, and Redis 7.0, which knows neither SETINFO nor
    # MAINT_NOTIFICATIONS, counts an error for each.
    assert {client.get("lib-name", "") for client in mine} == {""}
    assert stats["total_error_replies"] == 0


async def test_start_with_redis_down_returns_refusing(redis_server: RedisServer) -> None:
    redis_server.stop()
    store = RedisQuotaStore(connect_redis(redis_server.url), key_prefix="relay")
    try:
        async with asyncio.timeout(WARM_UP_SECONDS + 5):  # bounded: a hang fails here
            async with running_keeper(store) as keeper:
                assert keeper.store_healthy is False
                assert await keeper.admit(lease(0), LIMITS) == STORE_UNAVAILABLE
    finally:
        await store.aclose()


async def test_start_with_a_redis_that_never_answers_is_bounded() -> None:
    # A host that accepts connections and says nothing (a hung server, a dropping firewall).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    store = RedisQuotaStore(connect_redis(f"redis://127.0.0.1:{port}/0"), key_prefix="relay")
    try:
        async with asyncio.timeout(WARM_UP_SECONDS + 5):  # bounded: a hang fails here
            async with running_keeper(store, ttl=30) as keeper:
                assert keeper.store_healthy is False
    finally:
        await store.aclose()
        silent.close()


async def test_after_redis_restarts_empty_a_users_sessions_over_the_user_cap_are_ended(
    store: RedisQuotaStore, redis_server: RedisServer
) -> None:
    limits = QuotaLimits(max_sessions=10, max_sessions_per_user=2, tokens_per_minute=1_000)
    bob = [Lease("acme", "bob", f"bob-{n}", float(n)) for n in range(2)]
    ended: list[Lease] = []
    async with running_keeper(
        store, on_slot_lost=lambda lost, _: ended.append(lost.lease)
    ) as keeper:
        for one in bob:
            assert await keeper.admit(one, limits) is None
        redis_server.restart()
        # Before this relay's next beat, bob opens a session through another relay.
        assert await store.acquire(Lease("acme", "bob", "elsewhere", 100.0), limits, 30) is None

        await eventually(lambda: _ended(ended, 1), within=ONE_BEAT)

        assert ended == [bob[1]]  # the newer one
        assert keeper.live_leases == [bob[0]]
        assert await held(store) == {"bob-0", "elsewhere"}
