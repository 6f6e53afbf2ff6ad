"""Handshakes under attack: half-sent requests, oversized request lines and headers, idle
sockets. Each gets an HTTP answer at once (or at its deadline) and the socket is closed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from app.emulator import Emulator
from app.relay.client.bounded_protocols import (
    MAX_HEADER_LINE_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE_BYTES,
)
from tests.relay.conftest import API_KEY, relay_settings
from tests.reliability.conftest import SCALE, record, refusals, soak_marks
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()

REQUEST_TIMEOUT = 1.0
UPGRADE = (
    "GET /v1/live{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
)


@pytest.fixture
async def relay(echo_emulator: Emulator) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(echo_emulator, None, request_timeout_seconds=REQUEST_TIMEOUT)
    async with running_relay(settings) as running:
        yield running


async def exchange(relay: RunningRelay, request: bytes, wait: float = 10) -> tuple[bytes, float]:
    """Send `request`, read until the relay closes the socket; the answer and the time taken."""
    port = int(relay.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(read_until_closed(reader), timeout=wait)
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the relay sent before closing (a reset after the answer keeps the answer)."""
    chunks = []
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_an_oversized_url_is_answered_414_and_the_socket_closed(relay: RunningRelay) -> None:
    query = "?access_token=" + "a" * MAX_REQUEST_LINE_BYTES
    answer, _ = await exchange(relay, UPGRADE.format(query=query).encode() + b"\r\n")
    assert status_of(answer) == 414
    assert b'"code": 414' in answer
    assert await refusals(relay, "uri_too_long") == 1


async def test_a_4_mib_url_is_refused_before_it_is_all_sent(relay: RunningRelay) -> None:
    # The relay answers once the line passes its limit and closes; it buffers none of the rest.
    port = int(relay.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer_read = asyncio.create_task(read_until_closed(reader))
    with contextlib.suppress(ConnectionError):
        writer.write(b"GET /v1/live?x=" + b"a" * (4 * 1024 * 1024))
        await asyncio.wait_for(writer.drain(), timeout=10)
    answer = await asyncio.wait_for(answer_read, timeout=10)
    writer.close()
    assert status_of(answer) == 414
    assert await refusals(relay, "uri_too_long") == 1  # once, however much more arrived


@pytest.mark.parametrize(
    ("extra_headers", "why"),
    [
        (f"Cookie: {'c' * MAX_HEADER_LINE_BYTES}\r\n", "header line"),
        ("".join(f"X-Filler-{n}: {n}\r\n" for n in range(MAX_HEADERS + 50)), "header lines"),
        ("".join(f"X-Filler-{n}: {'v' * 4000}\r\n" for n in range(10)), "headers over"),
    ],
    ids=["10-kib-line", "150-headers", "40-kib-section"],
)
async def test_oversized_headers_are_answered_431_and_the_socket_closed(
    relay: RunningRelay, extra_headers: str, why: str
) -> None:
    request = UPGRADE.format(query="") + extra_headers + "\r\n"
    answer, _ = await exchange(relay, request.encode())
    assert status_of(answer) == 431
    assert why.encode() in answer
    assert await refusals(relay, "headers_too_large") == 1


async def test_a_half_sent_request_is_answered_408_at_its_deadline(relay: RunningRelay) -> None:
    clients = 10 * SCALE
    half = UPGRADE.format(query=f"?key={API_KEY}").encode()  # no blank line: never finished
    results = await asyncio.gather(*(exchange(relay, half) for _ in range(clients)))
    assert all(status_of(answer) == 408 for answer, _ in results)
    assert await refusals(relay, "request_timeout") == clients
    slowest = max(took for _, took in results)
    assert slowest < REQUEST_TIMEOUT + 5
    record("slowloris_closed_after_s", round(slowest, 2))


async def test_a_request_trickled_byte_by_byte_still_meets_the_deadline(
    relay: RunningRelay,
) -> None:
    port = int(relay.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer_read = asyncio.create_task(read_until_closed(reader))
    request = UPGRADE.format(query=f"?key={API_KEY}").encode()
    for byte in request:  # one byte every 100 ms: each read is fresh, the total is not
        if answer_read.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.1)
    answer = await asyncio.wait_for(answer_read, timeout=10)
    writer.close()
    assert status_of(answer) == 408
    assert time.monotonic() - started < REQUEST_TIMEOUT + 5


async def test_a_connection_that_sends_nothing_is_reaped(relay: RunningRelay) -> None:
    answer, took = await exchange(relay, b"")
    assert status_of(answer) == 408
    assert await refusals(relay, "request_timeout") == 1
    record("silent_connection_closed_after_s", round(took, 2))


async def test_an_idle_keep_alive_connection_is_reaped(relay: RunningRelay) -> None:
    port = int(relay.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    everything = await asyncio.wait_for(reader.read(), timeout=15)  # EOF when reaped
    took = time.monotonic() - started
    writer.close()
    assert everything.startswith(b"HTTP/1.1 200")
    assert took < 15
    record("idle_keepalive_closed_after_s", round(took, 2))


async def test_a_request_body_that_never_finishes_is_answered_408(relay: RunningRelay) -> None:
    request = (
        f"POST /v1/tokens HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    answer, took = await exchange(relay, request.encode())
    assert status_of(answer) == 408
    assert took < REQUEST_TIMEOUT + 5


async def test_an_upgrade_websockets_refuses_is_answered_and_closed(relay: RunningRelay) -> None:
    request = UPGRADE.format(query="").replace("Version: 13", "Version: 8") + "\r\n"
    answer, _ = await exchange(relay, request.encode())  # EOF within the wait: closed
    assert status_of(answer) == 400
    assert b"Sec-WebSocket-Version" in answer
    assert await refusals(relay, "bad_request") == 1


async def test_bytes_that_are_not_http_are_answered_400_and_closed(relay: RunningRelay) -> None:
    answer, _ = await exchange(relay, b"\x16\x03\x01\x02\x00 not an HTTP request\r\n\r\n")
    assert status_of(answer) == 400
    assert await refusals(relay, "bad_request") == 1
