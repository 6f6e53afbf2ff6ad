"""The replay buffer: numbering that survives pruning, a byte bound, and knowing what was lost."""

from __future__ import annotations

import logging

import pytest

from app.logs import session_id_var
from app.relay.upstream.replay_budget import ReplayBudget
from app.relay.upstream.replay_buffer import ReplayBuffer


def test_frames_are_numbered_from_one_and_pruning_keeps_the_numbers() -> None:
    buffer = ReplayBuffer(max_bytes=1000)
    assert [buffer.append(frame) for frame in ("a", "b", "c", "d")] == [1, 2, 3, 4]
    buffer.prune_through(2)
    assert (buffer.get(2), buffer.get(3), buffer.get(4)) == (None, "c", "d")
    buffer.prune_through(4)
    assert len(buffer) == 0
    assert buffer.size == 0
    assert buffer.append("e") == 5


def test_over_the_bound_the_oldest_frames_go_and_only_switches_needing_them_fail() -> None:
    buffer = ReplayBuffer(max_bytes=10)
    for frame in ("aaaa", "bbbb", "cccc"):
        buffer.append(frame)
    assert buffer.size == 8
    assert buffer.get(1) is None
    assert buffer.lost_through == 1
    assert not buffer.replayable_from(0)  # frame 1 would be needed, and it is gone
    assert buffer.replayable_from(1)


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReplayBuffer(max_bytes=0)


def test_a_shared_budget_counts_what_every_buffer_holds_and_gets_it_all_back() -> None:
    budget = ReplayBudget(max_bytes=1000)
    first, second = ReplayBuffer(100, budget), ReplayBuffer(100, budget)
    first.append("a" * 30)
    first.append("b" * 30)
    second.append("c" * 20)
    assert budget.held == 80
    first.prune_through(1)
    assert budget.held == 50
    second.append("d" * 90)  # over its own bound: its oldest frame goes, and leaves the budget
    assert (second.size, budget.held) == (90, 120)
    first.release()
    second.release()
    assert (budget.held, len(budget)) == (0, 0)


def test_past_the_budget_the_largest_holders_are_dropped_first_and_keep_nothing_after() -> None:
    budget = ReplayBudget(max_bytes=100)
    small, medium, large = (ReplayBuffer(1000, budget) for _ in range(3))
    small.append("s" * 10)
    medium.append("m" * 30)
    large.append("l" * 50)
    assert budget.dropped == 0
    small.append("s" * 20)  # 110 held: the largest holder goes, and only it
    assert (large.dropped, medium.dropped, small.dropped) == (True, False, False)
    assert (budget.held, budget.dropped, large.size) == (60, 1, 0)
    assert not large.replayable_from(0)
    assert large.replayable_from(1)  # a handle covering its only frame needs nothing replayed
    assert large.append("l" * 50) == 2  # numbered on, not kept, lost as it comes
    assert (large.size, large.get(2), large.lost_through, budget.held) == (0, None, 2, 60)
    assert (small.get(1), small.get(2), medium.get(1)) == ("s" * 10, "s" * 20, "m" * 30)
    large.release()  # a dropped buffer's session ends: nothing more to give back
    assert budget.held == 60


def test_the_appending_buffer_itself_is_dropped_when_it_holds_the_most() -> None:
    budget = ReplayBudget(max_bytes=100)
    other, grower = ReplayBuffer(1000, budget), ReplayBuffer(1000, budget)
    other.append("o" * 40)
    grower.append("g" * 40)
    assert grower.append("g" * 40) == 2
    assert (grower.dropped, other.dropped, budget.held) == (True, False, 40)
    assert grower.lost_through == 2


def test_a_drop_is_logged_once_under_the_dropped_buffers_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="app.relay.upstream.replay_budget")
    budget = ReplayBudget(max_bytes=100)
    buffers = {}
    for session in ("large", "small"):
        token = session_id_var.set(session)
        buffers[session] = ReplayBuffer(1000, budget)
        session_id_var.reset(token)
    buffers["large"].append("l" * 60)
    token = session_id_var.set("small")
    try:
        buffers["small"].append("s" * 50)  # the small session's append drops the large one
        buffers["small"].append("s" * 10)
    finally:
        session_id_var.reset(token)
    drops = [r for r in caplog.records if r.getMessage().startswith("replay buffer dropped")]
    assert [(r.__dict__["session"], r.__dict__["buffer_bytes"]) for r in drops] == [("large", 60)]
