"""SIGTERM to a real `live-relay serve` holding sessions of clients that stopped reading: the
process exits within `RELAY_DRAIN_SECONDS` plus a small grace, whatever the clients do.

Before writes and closes were bounded, a drain with one such client took 14.4 s instead of 4.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.emulator import Emulator
from tests.relay.conftest import API_KEY
from tests.reliability.conftest import SCALE, record, soak_marks
from tests.reliability.stalled import in_batches, stalled_client
from tests.support.relay import RelayProcess

pytestmark = soak_marks()

DRAIN_SECONDS = 2.0
CLIENTS = 4 * SCALE
# What docs/reliability.md states: the drain, then closes (0.5 s), the upstream's close
# timeout (2 s) and uvicorn's shutdown of what is left, well within 5 s.
GRACE_SECONDS = 5.0


async def test_drain_exits_on_time_with_stalled_clients(
    echo_emulator: Emulator, tmp_path: Path
) -> None:
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": echo_emulator.base_url,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "RELAY_DEFAULT_MAX_SESSIONS": str(CLIENTS),
        },
        tmp_path / "relay.log",
    )
    clients = []
    try:
        clients = await in_batches(CLIENTS, lambda: stalled_client(relay.url()))
        await asyncio.sleep(4)  # their writes have backed up by now (tests/reliability/stalled.py)
        started = time.monotonic()
        relay.terminate()
        exit_code = await asyncio.to_thread(relay.wait, 60)
        took = time.monotonic() - started
        record("drain_exit_after_sigterm_s", round(took, 2))
        assert exit_code == 0, relay.output()
        assert took < DRAIN_SECONDS + GRACE_SECONDS, relay.output()
    finally:
        await asyncio.gather(*(client.discard() for client in clients))
        relay.kill()
