"""A started relay keeps the garbage collector's full passes off its start-up heap, and collects
its young generation less often than CPython's default."""

from __future__ import annotations

import gc

from app.emulator import Emulator
from app.relay.heap import YOUNG_GENERATION_THRESHOLD
from tests.relay.conftest import relay_settings
from tests.support.relay import running_relay


async def test_objects_alive_at_start_up_are_frozen(emulator: Emulator) -> None:
    gc.unfreeze()  # a relay started by an earlier test froze the heap already
    from_before_start = [object()]  # a container: the collector tracks it until frozen
    assert gc.is_tracked(from_before_start)
    assert any(obj is from_before_start for obj in gc.get_objects())
    async with running_relay(relay_settings(emulator, None)):
        assert gc.get_freeze_count() > 0
        assert not any(obj is from_before_start for obj in gc.get_objects())
        created_after = [object()]
        assert any(obj is created_after for obj in gc.get_objects())


async def test_the_young_generation_is_collected_every_10000_allocations(
    emulator: Emulator,
) -> None:
    default = gc.get_threshold()
    gc.set_threshold(700, default[1], default[2])
    try:
        async with running_relay(relay_settings(emulator, None)):
            assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, default[1], default[2])
    finally:
        gc.set_threshold(*default)
