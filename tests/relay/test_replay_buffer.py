"""The replay buffer: numbering that survives pruning, a byte bound, and knowing what was lost."""

from __future__ import annotations

import pytest

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
