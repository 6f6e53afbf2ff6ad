"""Emulator tests: a default emulator per test for those that need no special configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.emulator import Emulator


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as running:
        yield running
