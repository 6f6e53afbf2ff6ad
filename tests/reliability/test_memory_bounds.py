"""Memory before admission is bounded: a real `live-relay serve` process, its RSS read from
/proc, while many authenticated connections hold setup frames that are not yet complete.

Before the bounds, one API key opened 40 connections each sending 14 MiB: RSS went from 78 to
639 MB in under a second and stayed there. Now a connection holds at most the setup cap
(`RELAY_MAX_SETUP_FRAME_BYTES`, 1 MiB) before admission, a process holds at most
`RELAY_MAX_PENDING_ADMISSIONS_PER_PROJECT` (64) such connections per project and
`..._PER_CREDENTIAL` (16) per credential, and the rest are refused with 429 before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import SCALE, record, soak_marks
from tests.support.relay import RelayProcess

pytestmark = soak_marks()

MiB = 1024 * 1024
KEYS = [f"lr_memory_{n}_" + "k" * 32 for n in range(5)]
CONNECTIONS = 40
SETUP_CAP = 1 * MiB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": ",".join(KEYS),
            "RELAY_LOG_LEVEL": "warning",
        },
        tmp_path / "relay.log",
    )
    try:
        yield process
    finally:
        process.kill()


async def upgrade(port: int, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A raw WebSocket handshake; the HTTP status the relay answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /v1/live?key={key} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    return reader, writer, int(head.split(b" ", 2)[1])


def frame_head(length: int) -> bytes:
    """A masked text frame's header (mask 0: the payload goes as is)."""
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


async def hold_incomplete_setup(port: int, key: str, size: int) -> tuple[asyncio.StreamWriter, int]:
    """Upgrade, then send all of a `size`-byte setup frame but its last 16 bytes."""
    _, writer, status = await upgrade(port, key)
    if status == 101:
        writer.write(frame_head(size) + b"x" * (size - 16))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    return writer, status


async def test_pending_connections_and_their_memory_are_capped(relay: RelayProcess) -> None:
    pid = relay.process.pid
    baseline = rss_mib(pid)

    async def round_(keys: list[str], connections: int) -> tuple[list[int], float, float]:
        held = await asyncio.gather(
            *(
                hold_incomplete_setup(relay.port, keys[n % len(keys)], SETUP_CAP - 64)
                for n in range(connections)
            )
        )
        await asyncio.sleep(1)  # let the relay read what it will read
        peak = rss_mib(pid)
        for writer, _ in held:
            writer.transport.abort()
        await asyncio.sleep(1)
        return [status for _, status in held], peak, rss_mib(pid)

    # The reported attack: one API key, 40 connections. 16 are held, 24 refused at once.
    statuses, one_key_peak, _ = await round_(KEYS[:1], 40)
    assert (statuses.count(101), statuses.count(429)) == (16, 24), statuses
    record("memory_one_key_40_connections_peak_mib", round(one_key_peak, 1))
    # Five keys, 80 connections, again and again: 64 held (the project's cap), 16 refused.
    peaks, afters = [], []
    for _ in range(3 * SCALE):
        statuses, peak, after = await round_(KEYS, 80)
        assert (statuses.count(101), statuses.count(429)) == (64, 16), statuses
        peaks.append(peak)
        afters.append(after)
    record("memory_baseline_mib", round(baseline, 1))
    record("memory_project_64_pending_peak_mib", round(max(peaks), 1))
    record("memory_after_each_burst_mib", " ".join(f"{after:.1f}" for after in afters))
    assert one_key_peak - baseline < 16 + 48, (baseline, one_key_peak)
    # 64 held connections x 1 MiB, plus generous room for buffers and the allocator.
    assert max(peaks) - baseline < 64 + 64, (baseline, peaks)
    # After a burst, what stays is what the allocator keeps for reuse: run alone, 5-25 MB
    # over the baseline (the soak's 15 bursts plateau there); in the parallel suite, where
    # reads come in smaller pieces, up to the 64 held setups' size, reached by the second
    # burst (e.g. +17, +39, +39 MB). It is reused, not added to: a ratchet (before: +30 MB a
    # burst, the held setups never freed) grows it at every burst, the last one included,
    # and keeps more than the setups' size within two.
    assert max(afters) - baseline < 64 + 24, (baseline, afters)
    assert afters[-1] - afters[-2] < 16, (baseline, afters)


async def test_a_setup_over_the_cap_is_closed_1009_before_it_is_buffered(
    relay: RelayProcess,
) -> None:
    reader, writer, status = await upgrade(relay.port, KEYS[0])
    assert status == 101
    writer.write(frame_head(8 * MiB))  # announces 8 MiB; the relay refuses from the header
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4), timeout=10)
    writer.transport.abort()
    assert answer[0] == 0x88  # a close frame
    assert struct.unpack("!H", answer[2:4])[0] == 1009


INPUT_BUDGET = 16 * MiB


async def test_the_input_budget_bounds_what_all_pending_connections_hold_together(
    tmp_path: Path,
) -> None:
    """64 connections each hold a 1 MiB setup that never completes: every one is within its
    own caps, 64 MiB in all. With a 16 MiB input budget the process keeps about that much: the
    largest holders are closed 1013 as they pass it."""
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": ",".join(KEYS),
            "RELAY_LOG_LEVEL": "warning",
            "RELAY_CLIENT_INPUT_BUDGET_BYTES": str(INPUT_BUDGET),
        },
        tmp_path / "relay.log",
    )
    try:
        baseline = rss_mib(relay.process.pid)
        held = await asyncio.gather(
            *(
                hold_incomplete_setup(relay.port, KEYS[n % len(KEYS)], SETUP_CAP - 64)
                for n in range(64)
            )
        )
        await asyncio.sleep(1)  # let the relay read what it will read
        peak = rss_mib(relay.process.pid)
        codes = []
        for writer, status in held:
            assert status == 101
            reader = writer.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
            with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
                answer = await asyncio.wait_for(reader.readexactly(4), timeout=0.2)
                if answer[0] == 0x88:  # a close frame
                    codes.append(struct.unpack("!H", answer[2:4])[0])
            writer.transport.abort()
    finally:
        relay.kill()
    record("memory_input_budget_16_mib_64_pending_peak_mib", round(peak, 1))
    record("memory_input_budget_16_mib_64_pending_shed", codes.count(1013))
    # 64 MiB sent: about 48 of the connections are over the budget and closed.
    assert codes.count(1013) >= 44, codes
    assert len(codes) == codes.count(1013), codes
    # The budget, plus room for buffers and the allocator (64 held before: < 64 + 64).
    assert peak - baseline < 16 + 32, (baseline, peak)
