"""A client cannot write a log line of its own, nor get its key logged, whatever the form of its
request target (app/logs.py), through a real `live-relay serve` writing text and JSON logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.security.tenants_support import ALPHA_KEY, bearer
from tests.support.relay import RelayProcess

FORGED = "2026-01-01T00:00:00.000+00:00 INFO app.relay.endpoint: session started project=beta"


UPGRADE = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


async def raw_request(port: int, request_line: str, *, upgrade: bool = False) -> bytes:
    """Send one request (a WebSocket upgrade with `upgrade`); what came back before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = UPGRADE if upgrade else "Connection: close\r\n"
    writer.write(f"{request_line}\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(12), timeout=10)
    finally:
        writer.close()


async def test_a_model_name_with_a_newline_cannot_forge_a_text_log_line(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": ALPHA_KEY, "RELAY_LOG_FORMAT": "text"},
        tmp_path / "relay.log",
    )
    try:
        for model in (f"x\n{FORGED}", f"x\r\n{FORGED}", f"x\u2028{FORGED}", "x\x1b[2J"):
            async with connect(relay.url(), additional_headers=bearer(ALPHA_KEY)) as ws:
                await ws.send(json.dumps({"setup": {"model": model}}))
                with pytest.raises(ConnectionClosed):  # 1008: not an allowed model
                    await asyncio.wait_for(ws.recv(), timeout=10)
        relay.wait_for_log("setup refused", timeout=10)
        await asyncio.sleep(0.3)
    finally:
        relay.kill()
    lines = relay.output().splitlines()
    assert not [line for line in lines if line.startswith(FORGED)]
    assert not [line for line in relay.output().split("\u2028")[1:] if line.startswith(FORGED)]
    assert "\x1b" not in relay.output()
    assert f"x\\n{FORGED}" in relay.output()  # what the client sent, escaped


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_key_in_any_form_of_request_target_is_never_logged(
    tmp_path: Path, log_format: str
) -> None:
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": ALPHA_KEY,
            "RELAY_LOG_FORMAT": log_format,
        },
        tmp_path / "relay.log",
    )
    try:
        answers = [
            await raw_request(relay.port, f"GET *?key={ALPHA_KEY} HTTP/1.1", upgrade=True),
            await raw_request(
                relay.port,
                f"GET http://u:{ALPHA_KEY}@127.0.0.1/v1/live?key={ALPHA_KEY} HTTP/1.1",
                upgrade=True,
            ),
            await raw_request(relay.port, f"OPTIONS *?key={ALPHA_KEY} HTTP/1.1"),
            await raw_request(relay.port, f"GET *?access_token={ALPHA_KEY} HTTP/1.1"),
            await raw_request(
                relay.port, f"GET http://127.0.0.1/v1/tokens?key={ALPHA_KEY} HTTP/1.1"
            ),
            await raw_request(relay.port, f"GET http://{ALPHA_KEY}:x@127.0.0.1/healthz HTTP/1.1"),
            await raw_request(relay.port, f"GET /healthz?key={ALPHA_KEY} HTTP/1.1"),
        ]
        async with connect(
            relay.url() + f"?key={ALPHA_KEY}", additional_headers={"Origin": "http://x"}
        ) as ws:
            with pytest.raises(ConnectionClosed):  # the origin is refused
                await asyncio.wait_for(ws.recv(), timeout=10)
        await asyncio.sleep(0.3)
    finally:
        relay.kill()
    assert all(answer.startswith(b"HTTP/1.1 ") for answer in answers), answers
    output = relay.output()
    assert "REDACTED" in output  # the lines were written, without the key
    assert ALPHA_KEY not in output
    assert ALPHA_KEY.removeprefix("lr_") not in output
