"""What every quota store promises, checked on each of them (see `backend` in conftest.py)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from app.quota.types import WINDOW_SECONDS, Lease, LostSlot, QuotaLimits, Refusal, Renewal
from tests.quota.conftest import Backend

TTL = 30.0
LIMITS = QuotaLimits(max_sessions=3, max_sessions_per_user=None, tokens_per_minute=1_000)
CAPS = {"acme": QuotaLimits(max_sessions=3), "other": QuotaLimits(max_sessions=3)}


def lease(number: int, *, project: str = "acme", user: str | None = None) -> Lease:
    return Lease(project, user, f"session-{number}", started_at=1_700_000_000.0 + number)


async def held(backend: Backend, project: str = "acme") -> set[str]:
    return {lease.session_id for lease in await backend.store.sessions(project)}


# --- concurrent sessions -----------------------------------------------------------------


async def test_acquire_admits_up_to_max_sessions_then_refuses_naming_the_limit(
    backend: Backend,
) -> None:
    for number in range(3):
        assert await backend.store.acquire(lease(number), LIMITS, TTL) is None

    refusal = await backend.store.acquire(lease(3), LIMITS, TTL)

    assert refusal == Refusal(
        'RESOURCE_EXHAUSTED: project "acme" has 3 of 3 concurrent sessions', "sessions"
    )
    assert await held(backend) == {"session-0", "session-1", "session-2"}


async def test_provisional_leases_count_but_a_refusal_names_them_apart_until_they_lapse(
    backend: Backend,
) -> None:
    one = QuotaLimits(max_sessions=1)
    assert await backend.store.acquire(lease(0), one, 0.4, provisional=True) is None

    refused = await backend.store.acquire(lease(1), one, TTL)

    assert refused is not None
    assert refused.reason == (
        'RESOURCE_EXHAUSTED: project "acme" has 0 of 1 concurrent sessions and 1 starting'
    )
    assert refused.provisional_lapse_seconds is not None
    assert 0 < refused.provisional_lapse_seconds <= 0.4
    await asyncio.sleep(0.5)
    assert await backend.store.acquire(lease(1), one, TTL) is None  # the provisional one lapsed


async def test_acquiring_a_provisional_lease_again_makes_it_a_sessions(backend: Backend) -> None:
    one = QuotaLimits(max_sessions=1)
    await backend.store.acquire(lease(0), one, 0.4, provisional=True)
    assert await backend.store.acquire(lease(0), one, TTL) is None

    refused = await backend.store.acquire(lease(1), one, TTL)
    await asyncio.sleep(0.5)

    assert refused == Refusal(
        'RESOURCE_EXHAUSTED: project "acme" has 1 of 1 concurrent sessions', "sessions"
    )
    assert await held(backend) == {"session-0"}  # held past the provisional lifetime


async def test_release_frees_the_slot_for_the_next_session(backend: Backend) -> None:
    for number in range(3):
        await backend.store.acquire(lease(number), LIMITS, TTL)

    await backend.store.release(lease(1), TTL)

    assert await backend.store.acquire(lease(3), LIMITS, TTL) is None
    assert await held(backend) == {"session-0", "session-2", "session-3"}


async def test_releasing_a_lease_that_is_not_held_changes_nothing(backend: Backend) -> None:
    await backend.store.acquire(lease(0), LIMITS, TTL)

    await backend.store.release(lease(7), TTL)
    await backend.store.release(lease(7, project="elsewhere"), TTL)

    assert await held(backend) == {"session-0"}


async def test_acquiring_a_held_lease_again_takes_no_second_slot(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=1)
    assert await backend.store.acquire(lease(0), limits, TTL) is None

    assert await backend.store.acquire(lease(0), limits, TTL) is None

    assert await held(backend) == {"session-0"}


async def test_a_lease_not_renewed_expires_after_its_ttl(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=1)
    await backend.store.acquire(lease(0), limits, ttl=0.2)
    assert (await backend.store.acquire(lease(1), limits, ttl=0.2)) is not None

    await asyncio.sleep(0.3)

    assert await held(backend) == set()
    assert await backend.store.acquire(lease(1), limits, TTL) is None


async def test_renew_keeps_leases_alive_past_their_ttl(backend: Backend) -> None:
    await backend.store.acquire(lease(0), LIMITS, ttl=0.4)
    await backend.store.acquire(lease(1, project="other"), LIMITS, ttl=0.4)

    for _ in range(6):
        await asyncio.sleep(0.1)
        renewal = await backend.store.renew([lease(0), lease(1, project="other")], CAPS, ttl=0.4)
        assert renewal == Renewal(restored=0, over_cap=())

    assert await held(backend) == {"session-0"}
    assert await held(backend, "other") == {"session-1"}


async def test_renew_recreates_leases_the_store_no_longer_holds(backend: Backend) -> None:
    # As a Redis restart without persistence would leave them: never recorded.
    renewal = await backend.store.renew([lease(0), lease(1, project="other")], CAPS, TTL)

    assert renewal == Renewal(restored=2, over_cap=())
    assert await backend.store.sessions("acme") == [lease(0)]
    assert await backend.store.sessions("other") == [lease(1, project="other")]


async def test_renew_revives_a_lease_that_expired(backend: Backend) -> None:
    await backend.store.acquire(lease(0), LIMITS, ttl=0.1)
    await asyncio.sleep(0.2)

    assert await backend.store.renew([lease(0)], CAPS, TTL) == Renewal(1, ())

    assert await held(backend) == {"session-0"}


async def test_renew_takes_lost_leases_back_only_up_to_the_cap_oldest_first(
    backend: Backend,
) -> None:
    # This replica's sessions 0-3 lost their leases (it froze past the TTL); meanwhile another
    # replica admitted sessions 10 and 11. Only one slot is left under the cap of 3.
    for number in (10, 11):
        assert await backend.store.acquire(lease(number), LIMITS, TTL) is None
    mine = [lease(3), lease(0), lease(2), lease(1)]

    renewal = await backend.store.renew(mine, CAPS, TTL)

    over_cap = tuple(LostSlot(lease(n), "project") for n in (1, 2, 3))
    assert renewal == Renewal(restored=1, over_cap=over_cap)
    assert await held(backend) == {"session-0", "session-10", "session-11"}


async def test_renew_keeps_held_leases_even_over_a_cap_lowered_since(backend: Backend) -> None:
    for number in range(3):
        await backend.store.acquire(lease(number), LIMITS, TTL)

    renewal = await backend.store.renew(
        [lease(0), lease(1), lease(2)], {"acme": QuotaLimits(max_sessions=1)}, TTL
    )

    assert renewal == Renewal(restored=0, over_cap=())
    assert len(await held(backend)) == 3


async def test_a_released_session_is_never_admitted_or_renewed_again(backend: Backend) -> None:
    # A stalled Redis may run a release before the acquire or renew sent ahead of it.
    await backend.store.release(lease(0), TTL)

    refusal = await backend.store.acquire(lease(0), LIMITS, TTL)
    renewal = await backend.store.renew([lease(0)], CAPS, TTL)

    assert refusal == Refusal(
        "UNAVAILABLE: admission given up after a quota store timeout", "store"
    )
    assert renewal == Renewal(restored=0, over_cap=())
    assert await held(backend) == set()
    assert await backend.store.acquire(lease(1), LIMITS, TTL) is None


async def test_the_release_mark_lasts_one_ttl(backend: Backend) -> None:
    await backend.store.release(lease(0), ttl=0.1)

    await asyncio.sleep(0.2)

    assert await backend.store.acquire(lease(0), LIMITS, TTL) is None


async def test_per_user_cap_refuses_only_that_users_extra_session(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=10, max_sessions_per_user=2)
    user = "zoë 🦊"  # ids reach Lua byte for byte, whatever their script
    assert await backend.store.acquire(lease(0, user=user), limits, TTL) is None
    assert await backend.store.acquire(lease(1, user=user), limits, TTL) is None

    refusal = await backend.store.acquire(lease(2, user=user), limits, TTL)

    assert refusal == Refusal(
        f'RESOURCE_EXHAUSTED: user "{user}" has 2 of 2 concurrent sessions', "user_sessions"
    )
    assert await backend.store.acquire(lease(3, user="bob"), limits, TTL) is None
    await backend.store.release(lease(0, user=user), TTL)
    assert await backend.store.acquire(lease(2, user=user), limits, TTL) is None


async def test_sessions_without_a_user_are_not_held_to_the_per_user_cap(
    backend: Backend,
) -> None:
    limits = QuotaLimits(max_sessions=10, max_sessions_per_user=1)

    results = [await backend.store.acquire(lease(n), limits, TTL) for n in range(3)]

    assert results == [None, None, None]


async def test_the_project_cap_is_checked_before_the_user_cap(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=1, max_sessions_per_user=1)
    await backend.store.acquire(lease(0, user="bob"), limits, TTL)

    refusal = await backend.store.acquire(lease(1, user="bob"), limits, TTL)

    assert refusal is not None
    assert refusal.kind == "sessions"


async def test_sessions_lists_live_leases_with_users_and_start_times_oldest_first(
    backend: Backend,
) -> None:
    newest, oldest = lease(2, user="bob"), lease(1)
    await backend.store.acquire(newest, LIMITS, TTL)
    await backend.store.acquire(oldest, LIMITS, TTL)
    await backend.store.acquire(lease(3, project="other"), LIMITS, TTL)
    await backend.store.acquire(lease(4), LIMITS, ttl=0.05)
    await asyncio.sleep(0.1)

    assert await backend.store.sessions("acme") == [oldest, newest]
    assert await backend.store.sessions("nobody") == []
    # The gauges' count: the same leases, the expired one not among them.
    assert await backend.store.held("acme") == 2
    assert await backend.store.held("nobody") == 0


async def test_each_project_has_its_own_slots(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=1)

    first = await backend.store.acquire(lease(0, project="acme"), limits, TTL)
    second = await backend.store.acquire(lease(1, project="globex"), limits, TTL)

    assert (first, second) == (None, None)


async def test_concurrent_acquires_admit_exactly_as_many_as_there_are_free_slots(
    backend: Backend,
) -> None:
    limits = QuotaLimits(max_sessions=10)
    replicas = [backend.store, backend.replica()]
    await backend.store.acquire(lease(999), limits, TTL)  # one slot already taken

    results = await asyncio.gather(
        *(replicas[n % 2].acquire(lease(n), limits, TTL) for n in range(50))
    )

    assert sum(result is None for result in results) == 9
    refusals = {result for result in results if result is not None}
    assert refusals == {
        Refusal('RESOURCE_EXHAUSTED: project "acme" has 10 of 10 concurrent sessions', "sessions")
    }
    assert len(await held(backend)) == 10


async def test_concurrent_acquires_of_one_user_admit_exactly_the_users_cap(
    backend: Backend,
) -> None:
    limits = QuotaLimits(max_sessions=100, max_sessions_per_user=3)
    replicas = [backend.store, backend.replica()]

    results = await asyncio.gather(
        *(replicas[n % 2].acquire(lease(n, user="bob"), limits, TTL) for n in range(30))
    )

    assert sum(result is None for result in results) == 3


async def test_racing_acquires_and_releases_leave_no_slot_held(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=5)
    replicas = [backend.store, backend.replica()]
    rng = random.Random(5)

    async def session(number: int) -> None:
        store = replicas[number % 2]
        await asyncio.sleep(rng.random() / 100)
        refused = await store.acquire(lease(number), limits, TTL)
        await asyncio.sleep(rng.random() / 100)
        if refused is None:
            await store.release(lease(number), TTL)

    await asyncio.gather(*(session(n) for n in range(200)))

    assert await held(backend) == set()


# --- tokens per minute -------------------------------------------------------------------


async def test_charges_add_up_in_the_window(backend: Backend) -> None:
    await backend.store.charge("acme", 300, LIMITS)

    window = await backend.store.charge("acme", 204, LIMITS)

    assert (window.used, window.limit, window.spent, window.seconds_until_free) == (
        504,
        1_000,
        False,
        None,
    )
    assert await backend.store.window("acme", LIMITS) == window
    assert (await backend.store.window("other", LIMITS)).used == 0


async def test_a_spent_window_refuses_new_sessions_saying_when_it_frees(
    backend: Backend,
) -> None:
    window = await backend.store.charge("acme", 1_000, LIMITS)

    refusal = await backend.store.acquire(lease(0), LIMITS, TTL)

    assert window.spent
    assert window.seconds_until_free is not None
    assert WINDOW_SECONDS - 1 < window.seconds_until_free <= WINDOW_SECONDS
    assert refusal == Refusal(
        'RESOURCE_EXHAUSTED: project "acme" spent its 1000 tokens per minute; retry in 60 s',
        "tokens",
    )
    assert await backend.store.acquire(lease(0, project="other"), LIMITS, TTL) is None


async def test_a_spent_window_does_not_end_leases_already_held(backend: Backend) -> None:
    await backend.store.acquire(lease(0), LIMITS, TTL)
    await backend.store.charge("acme", 5_000, LIMITS)

    assert await backend.store.renew([lease(0)], CAPS, TTL) == Renewal(0, ())
    assert await backend.store.acquire(lease(0), LIMITS, TTL) is None
    assert await held(backend) == {"session-0"}


async def test_tokens_leave_the_window_sixty_seconds_after_they_were_charged(
    backend: Backend,
) -> None:
    await backend.store.charge("acme", 600, LIMITS)
    await backend.make_tokens_older("acme", 30)
    await backend.store.charge("acme", 400, LIMITS)
    assert (await backend.store.window("acme", LIMITS)).spent

    await backend.make_tokens_older("acme", 31)

    window = await backend.store.window("acme", LIMITS)
    assert (window.used, window.spent) == (400, False)
    assert await backend.store.acquire(lease(0), LIMITS, TTL) is None


async def test_seconds_until_free_waits_for_just_enough_tokens_to_leave(
    backend: Backend,
) -> None:
    await backend.store.charge("acme", 400, LIMITS)
    await backend.make_tokens_older("acme", 40)
    await backend.store.charge("acme", 500, LIMITS)
    await backend.make_tokens_older("acme", 10)

    # 1,300 used: under 1,000 once the 400 charged 50 s ago leave, in 10 s. (Buckets are whole
    # seconds: a second boundary passing during the test may take up to one second off.)
    window = await backend.store.charge("acme", 400, LIMITS)
    assert window.used == 1_300
    assert window.seconds_until_free is not None
    assert 8 < window.seconds_until_free <= 10

    # 1,500 used: the 500 charged 10 s ago must leave too, in 50 s.
    window = await backend.store.charge("acme", 200, LIMITS)
    assert window.seconds_until_free is not None
    assert 48 < window.seconds_until_free <= 50


async def test_a_zero_budget_refuses_every_session(backend: Backend) -> None:
    refusal = await backend.store.acquire(lease(0), QuotaLimits(tokens_per_minute=0), TTL)

    assert refusal is not None
    assert refusal.kind == "tokens"


async def test_charging_negative_tokens_is_a_programming_error(backend: Backend) -> None:
    with pytest.raises(ValueError, match="negative"):
        await backend.store.charge("acme", -1, LIMITS)


# --- uses of relay-issued tokens -------------------------------------------------------------


async def test_consume_use_counts_down_then_refuses(backend: Backend) -> None:
    expires_at = time.time() + 60

    uses_left = [await backend.store.consume_use("jti-1", 3, expires_at) for _ in range(5)]

    assert uses_left == [2, 1, 0, None, None]
    assert await backend.store.consume_use("jti-2", 3, expires_at) == 2


async def test_consume_use_refuses_an_expired_key(backend: Backend) -> None:
    expires_at = time.time() + 0.2
    assert await backend.store.consume_use("jti-1", 5, expires_at) == 4

    await asyncio.sleep(0.3)

    assert await backend.store.consume_use("jti-1", 5, expires_at) is None
    assert await backend.store.consume_use("jti-2", 5, time.time() - 1) is None


async def test_concurrent_uses_of_one_key_never_exceed_its_max(backend: Backend) -> None:
    replicas = [backend.store, backend.replica()]
    expires_at = time.time() + 60

    results = await asyncio.gather(
        *(replicas[n % 2].consume_use("jti-1", 4, expires_at) for n in range(40))
    )

    assert sorted(result for result in results if result is not None) == [0, 1, 2, 3]


async def test_ping_answers_when_the_store_is_reachable(backend: Backend) -> None:
    await backend.store.ping()


# --- the per-user cap at scale (issue 15: one record per user, not a walk over all leases) ---


async def test_per_user_cap_is_exact_for_each_user_among_many_leases(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=1_000, max_sessions_per_user=4, tokens_per_minute=10**9)
    replicas = [backend.store, backend.replica()]
    # 40 users x 7 attempts, raced through two replicas; 100 sessions without a user around.
    attempts = [lease(n, user=f"user-{n % 40}") for n in range(280)]
    attempts += [lease(1_000 + n) for n in range(100)]
    random.Random(15).shuffle(attempts)

    results = await asyncio.gather(
        *(replicas[n % 2].acquire(a, limits, TTL) for n, a in enumerate(attempts))
    )

    admitted: dict[str | None, int] = {}
    for attempt, result in zip(attempts, results, strict=True):
        if result is None:
            admitted[attempt.user] = admitted.get(attempt.user, 0) + 1
        else:
            assert result.kind == "user_sessions", result
    assert admitted.pop(None) == 100
    assert admitted == {f"user-{u}": 4 for u in range(40)}
    assert len(await held(backend)) == 40 * 4 + 100


async def test_expired_leases_leave_the_users_count(backend: Backend) -> None:
    limits = QuotaLimits(max_sessions=100, max_sessions_per_user=2)
    for n in range(2):
        assert await backend.store.acquire(lease(n, user="bob"), limits, ttl=0.2) is None
    assert await backend.store.acquire(lease(2, user="bob"), limits, TTL) is not None

    await asyncio.sleep(0.3)  # bob's two leases expire; nobody renews them

    fresh = [await backend.store.acquire(lease(n, user="bob"), limits, TTL) for n in (3, 4, 5)]
    assert fresh[:2] == [None, None]
    assert fresh[2] is not None
    assert fresh[2].kind == "user_sessions"


async def test_a_user_at_the_cap_who_releases_is_admitted_again_exactly_to_the_cap(
    backend: Backend,
) -> None:
    limits = QuotaLimits(max_sessions=100, max_sessions_per_user=3)
    first = [lease(n, user="bob") for n in range(3)]
    for held_lease in first:
        assert await backend.store.acquire(held_lease, limits, TTL) is None

    await asyncio.gather(*(backend.store.release(held_lease, TTL) for held_lease in first))
    again = [await backend.store.acquire(lease(n, user="bob"), limits, TTL) for n in range(10, 14)]

    assert again[:3] == [None, None, None]
    assert again[3] is not None
    assert again[3].kind == "user_sessions"


async def test_renew_takes_lost_leases_back_only_within_the_users_cap_too(
    backend: Backend,
) -> None:
    # This replica's sessions lost their leases; meanwhile another replica admitted one more
    # session of bob's. Bob may hold 2: only his oldest lost session fits, carol's fits too.
    limits = QuotaLimits(max_sessions=10, max_sessions_per_user=2)
    assert await backend.store.acquire(lease(10, user="bob"), limits, TTL) is None
    mine = [lease(2, user="bob"), lease(0, user="bob"), lease(1, user="bob")]
    mine.append(lease(3, user="carol"))

    renewal = await backend.store.renew(mine, {"acme": limits}, TTL)

    over_cap = tuple(LostSlot(lease(n, user="bob"), "user") for n in (1, 2))
    assert renewal == Renewal(restored=2, over_cap=over_cap)
    assert await held(backend) == {"session-0", "session-3", "session-10"}
    refusal = await backend.store.acquire(lease(20, user="bob"), limits, TTL)
    assert refusal is not None
    assert refusal.kind == "user_sessions"


async def test_renew_keeps_a_users_held_leases_even_over_a_user_cap_lowered_since(
    backend: Backend,
) -> None:
    roomy = QuotaLimits(max_sessions=10, max_sessions_per_user=3)
    mine = [lease(n, user="bob") for n in range(3)]
    for held_lease in mine:
        assert await backend.store.acquire(held_lease, roomy, TTL) is None

    tight = QuotaLimits(max_sessions=10, max_sessions_per_user=1)
    assert await backend.store.renew(mine, {"acme": tight}, TTL) == Renewal(0, ())
    assert len(await held(backend)) == 3


# --- budget counters -----------------------------------------------------------------------


async def test_counters_add_atomically_across_replicas_and_zero_only_reads(
    backend: Backend,
) -> None:
    later = time.time() + 3600
    other = backend.replica()
    names = ["tokens:day:2026-12-07", "tokens:day:2026-12-07:user:zoë 🦊"]
    adds = [
        store.add_to_counters("acme", [(name, 3, later) for name in names])
        for store in (backend.store, other)
        for _ in range(50)
    ]
    await asyncio.gather(*adds)
    assert await other.add_to_counters("acme", [(name, 0, later) for name in names]) == [300, 300]
    # Counters are the project's own, and a read of one never set is zero.
    assert await backend.store.add_to_counters("other", [(names[0], 0, later)]) == [0]
    assert await backend.store.add_to_counters("acme", [("usd:month:2026-12", 7, later)]) == [7]


async def test_a_counter_is_forgotten_when_it_expires(backend: Backend) -> None:
    soon = time.time() + 0.2
    assert await backend.store.add_to_counters("acme", [("tokens:day:x", 5, soon)]) == [5]
    await asyncio.sleep(0.4)
    assert await backend.store.add_to_counters("acme", [("tokens:day:x", 0, soon + 10)]) == [0]


# --- over the budget: shedding the top spenders ----------------------------------------------

SHED = QuotaLimits(max_sessions=10, tokens_per_minute=1_000, shed_grace_percent=10)


async def spend(backend: Backend, number: int, tokens: int, limits: QuotaLimits = SHED) -> bool:
    """Charge `tokens` to session `number` (it holds a lease); whether it is to be shed."""
    window = await backend.store.charge("acme", tokens, limits, session_id=f"session-{number}")
    return window.shed


async def test_a_burst_within_the_grace_sheds_nobody(backend: Backend) -> None:
    for number in range(3):
        await backend.store.acquire(lease(number), SHED, TTL)

    shed = [
        await spend(backend, 0, 600),
        await spend(backend, 1, 400),
        await spend(backend, 2, 100),
    ]

    assert (await backend.store.window("acme", SHED)).used == 1_100  # spent, within 10 %
    assert shed == [False, False, False]


async def test_over_the_grace_only_the_fewest_top_spenders_are_shed_each_at_its_own_charge(
    backend: Backend,
) -> None:
    for number in range(4):
        await backend.store.acquire(lease(number), SHED, TTL)
    for number, tokens in enumerate([500, 400, 200, 100]):
        assert await spend(backend, number, tokens) is False  # 1,200 only after the last

    # 1,200 used, 200 over the budget: session-0 (500) alone brings it under, so the charges
    # of the others shed nobody, and session-0 is shed at its own next charge, once.
    assert await spend(backend, 3, 1) is False
    assert await spend(backend, 1, 1) is False
    assert await spend(backend, 0, 1) is True
    assert await spend(backend, 0, 1) is False
    assert [await spend(backend, number, 1) for number in (1, 2, 3)] == [False, False, False]


async def test_an_overage_larger_than_the_top_spender_sheds_the_next_ones_too(
    backend: Backend,
) -> None:
    for number in range(4):
        await backend.store.acquire(lease(number), SHED, TTL)
    for number, tokens in enumerate([500, 400, 300, 200]):
        await spend(backend, number, tokens)

    # 1,400 used, 400 over: session-0 (500) alone covers it, and the kept 900 is under the
    # budget. Then session-3 grows to 600: 1,300 kept, 300 over, and it is the top spender.
    assert await spend(backend, 0, 0) is True
    assert await spend(backend, 3, 400) is True  # now the top live spender: 600
    assert await spend(backend, 1, 0) is False  # kept 1,800 - 500 - 600 = 700: under


async def test_a_session_that_ended_no_longer_counts_to_the_kept_rate(backend: Backend) -> None:
    for number in range(2):
        await backend.store.acquire(lease(number), SHED, TTL)
    await spend(backend, 0, 800)
    await backend.store.release(lease(0), TTL)

    assert await spend(backend, 1, 400) is False  # 1,200 used, but only 400 kept


async def test_two_replicas_charging_at_once_shed_once_for_one_overage(backend: Backend) -> None:
    replicas = [backend.store, backend.replica()]
    for number in range(6):
        await backend.store.acquire(lease(number), SHED, TTL)
    for number, tokens in enumerate([300, 250, 200, 150, 100, 50]):
        await spend(backend, number, tokens)  # 1,050: within the grace

    async def charge(number: int, replica: int) -> tuple[str, bool]:
        store = replicas[replica % 2]
        window = await store.charge("acme", 30, SHED, session_id=f"session-{number}")
        return f"session-{number}", window.shed

    # Every session charges from both replicas at once: 1,410 used. Shedding session-0 (360)
    # keeps 1,050, within the grace: nobody else is shed, and session-0 only once.
    answers = await asyncio.gather(*(charge(n, r) for n in range(6) for r in range(2)))

    assert [name for name, shed in answers if shed] == ["session-0"]


async def test_nobody_is_shed_once_the_overage_left_the_window(backend: Backend) -> None:
    for number in range(2):
        await backend.store.acquire(lease(number), SHED, TTL)
    await spend(backend, 0, 900)
    await spend(backend, 1, 300)
    await backend.make_tokens_older("acme", WINDOW_SECONDS + 1)
    for number in range(2):  # the memory store's leases aged with its clock
        await backend.store.acquire(lease(number), SHED, TTL)

    assert await spend(backend, 0, 100) is False
    assert await spend(backend, 1, 100) is False


async def test_a_charge_without_a_session_never_sheds(backend: Backend) -> None:
    await backend.store.acquire(lease(0), SHED, TTL)
    window = await backend.store.charge("acme", 5_000, SHED)

    assert window.spent
    assert window.shed is False
