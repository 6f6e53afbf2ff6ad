"""Fixtures of the security suite: an emulator, and two `live-relay serve` replicas sharing a
real Redis in front of one emulator (see tenants_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.security.tenants_support import Replicas, replicas
from tests.support.redis_server import RedisServer

# A handle the relay will not resume, whoever's it was: the upstream's own words, no oracle.
NOT_FOUND = (1008, "BidiGenerateContent session not found")


@pytest.fixture
async def two_replicas(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Replicas]:
    async with (
        Emulator(EmulatorConfig()) as emulator,
        replicas(emulator, redis_server, tmp_path) as running,
    ):
        yield running
