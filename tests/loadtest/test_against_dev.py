"""`live-relay loadtest` with nothing but its defaults, the URL, key and CA that `make run`
(`live-relay dev`) prints: voice and text both run clean against the stock dev emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.docs.test_snippets import API_KEY, DevRelay, start_dev_relay
from tests.loadtest.conftest import run_loadtest


@pytest.fixture(scope="module")
def dev_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRelay]:
    yield from start_dev_relay(tmp_path_factory.mktemp("dev"))


@pytest.mark.parametrize("mode", [(), ("--text", "--turn-interval=0.5")], ids=["voice", "text"])
async def test_the_defaults_work_against_make_run(
    dev_relay: DevRelay, mode: tuple[str, ...]
) -> None:
    status, stdout, stderr = await run_loadtest(
        f"wss://localhost:{dev_relay.port}/v1/live",
        "--api-key",
        API_KEY,
        "--ca-file",
        str(dev_relay.ca_file),
        "--duration=1.5",
        "--ramp-up=0",
        "--json",
        "--quiet",
        *mode,
    )
    assert status == 0, stdout + stderr
    report: dict[str, Any] = json.loads(stdout)
    assert report["errors"]["total"] == 0, report["errors"]
    assert report["frames"]["answered"] > 0
    assert report["frames"]["lost"] == 0
