"""The refusal reasons clients see: the limit they hit, in a close reason that fits."""

from __future__ import annotations

from app.quota.refusals import (
    MAX_CLOSE_REASON_BYTES,
    STORE_UNAVAILABLE,
    lost_slot_reason,
    sessions_refusal,
    tokens_refusal,
    user_sessions_refusal,
)
from app.quota.types import Lease, LostSlot, QuotaLimits, Refusal


def test_each_refusal_names_its_limit() -> None:
    assert sessions_refusal("acme", 10, 10) == Refusal(
        'RESOURCE_EXHAUSTED: project "acme" has 10 of 10 concurrent sessions', "sessions"
    )
    assert user_sessions_refusal("bob", 2, 2) == Refusal(
        'RESOURCE_EXHAUSTED: user "bob" has 2 of 2 concurrent sessions', "user_sessions"
    )
    assert tokens_refusal("acme", 4_000_000, 16.2) == Refusal(
        'RESOURCE_EXHAUSTED: project "acme" spent its 4000000 tokens per minute; retry in 17 s',
        "tokens",
    )
    assert Refusal("UNAVAILABLE: quota store unreachable", "store") == STORE_UNAVAILABLE


def test_the_retry_delay_is_never_below_one_second() -> None:
    assert tokens_refusal("acme", 100, 0.004).reason.endswith("retry in 1 s")


def test_long_names_are_shortened_so_the_reason_fits_a_close_frame() -> None:
    project = "p" * 200
    user = "ü" * 100  # two bytes each: cut on a character boundary, never inside one

    reasons = [
        sessions_refusal(project, 1_000_000, 1_000_000).reason,
        user_sessions_refusal(user, 1_000_000, 1_000_000).reason,
        tokens_refusal(project, 4_000_000_000, 59.5).reason,
    ]

    for reason in reasons:
        assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
        assert "…" in reason
    assert reasons[0].endswith("has 1000000 of 1000000 concurrent sessions")
    assert reasons[1].endswith("has 1000000 of 1000000 concurrent sessions")
    assert reasons[2].endswith("spent its 4000000000 tokens per minute; retry in 60 s")


def test_absurd_numbers_still_fit_a_close_frame() -> None:
    reason = sessions_refusal("acme", 10**120, 10**120).reason

    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert reason.startswith('RESOURCE_EXHAUSTED: project "acme" has 1000')


def test_a_lost_slot_names_the_cap_that_left_it_out() -> None:
    limits = QuotaLimits(max_sessions=10, max_sessions_per_user=2)
    bobs = Lease("acme", "bob", "s1", 0.0)
    assert lost_slot_reason(LostSlot(bobs, "project"), limits) == (
        'RESOURCE_EXHAUSTED: slot lost in a quota store outage; project "acme" is full '
        "(10 sessions)"
    )
    assert lost_slot_reason(LostSlot(bobs, "user"), limits) == (
        'RESOURCE_EXHAUSTED: slot lost in a quota store outage; user "bob" has its 2 sessions'
    )
    long_names = Lease("p" * 200, "u" * 200, "s2", 0.0)
    for lost in (LostSlot(long_names, "project"), LostSlot(long_names, "user")):
        assert len(lost_slot_reason(lost, limits).encode()) <= MAX_CLOSE_REASON_BYTES
