"""Load-test targets as fixtures named `<name>_target` (listed in `TARGETS`), and a runner.

The emulator hit directly, and the relay in front of it as deployed (wss://, API key, quotas in
Redis, metrics). To run the same checks through another endpoint, add a fixture and its name.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.emulator import Emulator, EmulatorConfig
from tests.relay.conftest import API_KEY, MODEL, relay_settings
from tests.support.redis_server import RedisServer
from tests.support.relay import running_relay
from tests.support.tls import TLSFiles

VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
TARGETS = ["emulator", "relay"]
LOADTEST_DEADLINE_SECONDS = 60


@dataclass(frozen=True)
class Target:
    """An endpoint, and the loadtest options it needs (model, credential, CA)."""

    url: str
    options: tuple[str, ...] = ()


@pytest.fixture
async def emulator_target() -> AsyncIterator[Target]:
    """The emulator in load-test mode, hit directly: the no-relay baseline."""
    async with Emulator(EmulatorConfig(echo_audio=True)) as emulator:
        yield Target(emulator.base_url + VERTEX_PATH)


@pytest.fixture
async def relay_target(
    tls_files: TLSFiles, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Target]:
    """The relay as deployed, in front of the emulator in load-test mode."""
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY)
    async with Emulator(EmulatorConfig(echo_audio=True)) as emulator:
        settings = relay_settings(emulator, tls_files, redis_url=redis_server.url)
        async with running_relay(settings) as relay:
            options = ("--model", MODEL, "--api-key-file", str(key_file))
            yield Target(relay.url, (*options, "--ca-file", str(tls_files.ca_file)))


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.getfixturevalue(f"{request.param}_target")
    return found


async def run_loadtest(*args: str) -> tuple[int, str, str]:
    """Run `live-relay loadtest ARGS` without blocking this loop (it may serve the target)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "loadtest",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), LOADTEST_DEADLINE_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
