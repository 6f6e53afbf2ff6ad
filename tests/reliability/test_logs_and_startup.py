"""Logs tell client behaviour from relay bugs, and settings that can never work stop start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from app.emulator import Emulator
from tests.relay.conftest import API_KEY, MODEL, relay_settings
from tests.reliability.conftest import soak_marks
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()


@pytest.fixture
async def relay(echo_emulator: Emulator) -> AsyncIterator[RunningRelay]:
    """A relay whose upstream accepts TCP and never answers: every session is refused (1011)
    at the upstream connect timeout, long after a hasty client may have left."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the relay gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = relay_settings(
        echo_emulator,
        None,
        emulator_url=f"ws://127.0.0.1:{port}",
        upstream_connect_timeout_seconds=1,
    )
    try:
        async with running_relay(settings) as running:
            yield running
    finally:
        server.close()


async def send_setup_and_vanish(relay: RunningRelay, setup: dict[str, object]) -> None:
    """Upgrade, send a setup frame, and reset the connection without waiting for an answer."""
    port = int(relay.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /v1/live?key={API_KEY} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    payload = json.dumps({"setup": setup}).encode()
    writer.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload)) + b"\0" * 4 + payload)
    await writer.drain()
    await asyncio.sleep(0.3)  # the relay is connecting upstream now
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    writer.transport.abort()


async def test_a_client_that_leaves_while_refused_is_info_not_an_error(
    relay: RunningRelay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await asyncio.gather(*(send_setup_and_vanish(relay, {"model": MODEL}) for _ in range(3)))
    for _ in range(200):  # the relay gives up on the upstream after 1 s
        if caplog.text.count("client left") == 3:
            break
        await asyncio.sleep(0.05)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]
    left = [record for record in caplog.records if "client left" in record.getMessage()]
    assert len(left) == 3
    assert all(record.levelno == logging.INFO for record in left)
    assert "client disconnected" in left[0].getMessage()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_refuses_an_api_key_no_request_could_use() -> None:
    result = run_cli("dev", "--port", "0", "--plain", "--api-key", "mysecret")
    assert result.returncode == 2
    assert "--api-key must start with `lr_`" in result.stderr


def test_serve_refuses_keys_and_signing_keys_that_can_never_work() -> None:
    result = run_cli(
        "serve",
        env={
            "RELAY_API_KEYS": "lr_fine_key_" + "k" * 20 + ",mysecret",
            "RELAY_TOKEN_SIGNING_KEY": "short",
        },
    )
    assert result.returncode == 2
    assert "RELAY_API_KEYS" in result.stderr
    assert "API key #2 does not start with `lr_`" in result.stderr
    assert "RELAY_TOKEN_SIGNING_KEY" in result.stderr
    assert "mysecret" not in result.stderr  # secrets are named by position, never echoed
    assert "tooshortkey" not in result.stderr


def test_serve_refuses_an_input_budget_smaller_than_one_frame() -> None:
    result = run_cli(
        "serve",
        env={
            "RELAY_API_KEYS": "lr_fine_key_" + "k" * 20,
            "RELAY_MAX_FRAME_BYTES": "1048576",
            "RELAY_CLIENT_INPUT_BUDGET_BYTES": "65536",
        },
    )
    assert result.returncode == 2
    assert (
        "RELAY_CLIENT_INPUT_BUDGET_BYTES (65536) must be at least RELAY_MAX_FRAME_BYTES (1048576)"
        in result.stderr
    )
