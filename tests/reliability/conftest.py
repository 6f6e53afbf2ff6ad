"""The reliability suite: hostile, slow and broken clients against a relay with short limits.

Every test here is marked `soak` (`pytestmark = soak_marks()`). `make test` runs the short
version; a longer soak, with more clients and more rounds, runs by hand:

    LIVE_RELAY_SOAK=1 .venv/bin/python -m pytest tests/reliability -m soak

Outcomes are asserted with generous margins (the machine is shared); the measured figures go
to the file named by `LIVE_RELAY_FIGURES` when it is set (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.support.relay import RunningRelay
from tests.support.scrape import scrape, value

SOAK = os.environ.get("LIVE_RELAY_SOAK", "") not in ("", "0")
SCALE = 5 if SOAK else 1  # the soak multiplies clients and rounds by this


def soak_marks() -> list[pytest.MarkDecorator]:
    """`pytestmark` of every module here: the `soak` marker, and room for the long rounds."""
    return [pytest.mark.soak, pytest.mark.timeout(900 if SOAK else 120)]


def record(name: str, value: float | int | str) -> None:
    """Keep a measured figure for the docs (only when `LIVE_RELAY_FIGURES` names a file)."""
    target = os.environ.get("LIVE_RELAY_FIGURES")
    if not target:
        return
    path = Path(target)
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


async def counted(relay: RunningRelay, metric: str, reason: str) -> float:
    """`metric{reason="..."}` as Prometheus scrapes it from the relay."""
    return value(await scrape(f"{relay.http_url}/metrics"), metric, reason=reason)


async def refusals(relay: RunningRelay, reason: str) -> float:
    return await counted(relay, "relay_connections_refused_total", reason)


async def aborts(relay: RunningRelay, reason: str) -> float:
    return await counted(relay, "relay_client_aborts_total", reason)


@pytest.fixture
async def echo_emulator() -> AsyncIterator[Emulator]:
    """An emulator that answers every audio chunk with the same bytes: output on demand."""
    async with Emulator(EmulatorConfig(echo_audio=True)) as emu:
        yield emu
