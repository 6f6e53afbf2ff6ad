"""The client-visible gap of an upstream switch (transparent resumption), at 1 and 200 sessions.

    python -m tests.bench.switch_gap                         # 1 and 200 sessions, both modes
    python -m tests.bench.switch_gap --sessions 1,50 --duration 8 --modes make_before_break

An emulator whose connections live `--lifetime` seconds runs in its own process, a real
`live-relay serve` in another; this process opens the sessions, each sending a 20 ms chunk of
audio every `--audio-interval` seconds and reading everything back, so every switch has input
to hold and replay. (Not real-time audio: the emulator's voice detector is pure Python, and
200 real-time streams would make it, not the relay, what is measured.) The relay logs each switch
("upstream switched", with `gap_ms`: from the moment the old connection could no longer be
used to the new one being ready with the unconfirmed input replayed, and `connect_ms`, the
new connection's handshake within it); the table gives their percentiles.

Connections live `--lifetime` seconds and the sessions start spread over one lifetime, so
N sessions make about N / lifetime switches a second: the real service's ten minutes make
200 sessions switch a third of a time a second; short lifetimes make a switch storm.
Everything is bounded: session counts, the duration, every process's lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from tests.bench.procstat import Sample, sample
from tests.support.audio import silence
from tests.support.net import free_port, wait_for_port
from tests.support.relay import RelayProcess

API_KEY = "lr_bench_" + "b" * 32
MODEL = "gemini-live-2.5-flash"
MODES = ("make_before_break", "break_before_make", "fallback")
MAX_SESSIONS = 500
CHUNK_SECONDS = 0.02
CORES = tuple(range(os.cpu_count() or 1))
MAX_DURATION_SECONDS = 120


@dataclass(frozen=True)
class Result:
    mode: str
    sessions: int
    switches: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    connect_p50_ms: float
    failed_sessions: int
    relay_cpu_percent: float  # of one core
    emulator_cpu_percent: float
    machine_busy_percent: float  # of all cores, whoever used them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,200", help="comma-separated session counts")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per step")
    parser.add_argument("--lifetime", type=float, default=6.0, help="upstream connection life")
    parser.add_argument(
        "--audio-interval", type=float, default=0.2, help="seconds between audio chunks"
    )
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--refuse-while-open", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        asyncio.run(_serve_emulator(args.port, args.lifetime, args.refuse_while_open))
        return 0
    counts = [min(int(n), MAX_SESSIONS) for n in args.sessions.split(",") if n.strip()]
    modes = [mode for mode in args.modes.split(",") if mode in MODES]
    duration = min(args.duration, MAX_DURATION_SECONDS)
    results = [
        _step(mode, count, duration, args.lifetime, args.audio_interval)
        for mode in modes
        for count in counts
    ]
    print(_table(results, duration, args.lifetime))
    return 0


async def _serve_emulator(port: int, lifetime: float, refuse_while_open: bool) -> None:
    config = EmulatorConfig(
        connection_lifetime_seconds=lifetime,
        goaway_notice_seconds=lifetime / 3,
        resume_while_open="refuse" if refuse_while_open else "allow",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Emulator(config, port=port):
        await stop.wait()


def _step(mode: str, sessions: int, duration: float, lifetime: float, interval: float) -> Result:
    emulator_port = free_port()
    command = [sys.executable, "-m", "tests.bench.switch_gap", "--serve-emulator"]
    command += ["--port", str(emulator_port), "--lifetime", str(lifetime)]
    if mode == "fallback":
        command.append("--refuse-while-open")
    emulator = _spawn(command)
    with tempfile.TemporaryDirectory(prefix="switch-gap-") as scratch:
        try:
            wait_for_port(emulator_port, timeout=30)
            relay = RelayProcess(
                {
                    "RELAY_UPSTREAM": "emulator",
                    "RELAY_EMULATOR_URL": f"ws://127.0.0.1:{emulator_port}",
                    "RELAY_API_KEYS": API_KEY,
                    "RELAY_DEFAULT_MAX_SESSIONS": str(MAX_SESSIONS),
                    "RELAY_RESUMPTION_MAKE_BEFORE_BREAK": str(mode != "break_before_make"),
                },
                Path(scratch) / "relay.log",
            )
            pids = [relay.process.pid, emulator.pid]
            before = sample(pids[:1], CORES), sample(pids[1:], CORES)
            try:
                failed = asyncio.run(
                    _run_sessions(relay.url(), sessions, duration, lifetime, interval)
                )
                after = sample(pids[:1], CORES), sample(pids[1:], CORES)
            finally:
                relay.terminate()
                with contextlib.suppress(Exception):
                    relay.wait(timeout=15)
                relay.kill()
            gaps, connects = _switch_gaps(relay.output())
        finally:
            _stop(emulator)
    ordered = sorted(gaps) or [float("nan")]
    connect_p50 = statistics.median(connects) if connects else float("nan")
    return Result(
        mode=mode,
        sessions=sessions,
        switches=len(gaps),
        p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        max_ms=ordered[-1],
        connect_p50_ms=connect_p50,
        failed_sessions=failed,
        relay_cpu_percent=_cpu_percent(before[0], after[0]),
        emulator_cpu_percent=_cpu_percent(before[1], after[1]),
        machine_busy_percent=_busy_percent(before[0], after[0]),
    )


async def _run_sessions(
    url: str, sessions: int, duration: float, lifetime: float, interval: float
) -> int:
    """Run `sessions` sessions for `duration` seconds, starts spread over one connection
    lifetime (as real sessions are); return how many ended early."""
    ends_at = time.monotonic() + duration
    results = await asyncio.gather(
        *(_session(url, ends_at, lifetime * n / sessions, interval) for n in range(sessions)),
        return_exceptions=True,
    )
    return sum(1 for result in results if result is not True)


async def _session(url: str, ends_at: float, delay: float, interval: float) -> bool:
    await asyncio.sleep(delay)
    chunk = base64.b64encode(silence(CHUNK_SECONDS)).decode()
    audio = json.dumps(
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": chunk}}}
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with connect(url, additional_headers=headers, open_timeout=30) as ws:
        setup = {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
        await ws.send(json.dumps({"setup": setup}))
        await asyncio.wait_for(ws.recv(), timeout=30)

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(drain())
        try:
            while time.monotonic() < ends_at and not reader.done():
                await ws.send(audio)
                await asyncio.sleep(interval)
            return not reader.done()  # the relay closed it: the session failed
        finally:
            reader.cancel()


def _switch_gaps(log: str) -> tuple[list[float], list[float]]:
    """Each switch's gap and, within it, the new connection's handshake (milliseconds)."""
    gaps, connects = [], []
    for line in log.splitlines():
        if '"upstream switched"' in line:
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                gaps.append(float(entry["gap_ms"]))
                connects.append(float(entry["connect_ms"]))
    return gaps, connects


def _table(results: list[Result], duration: float, lifetime: float) -> str:
    lines = [
        f"Upstream switch gap, {duration:g} s per step, emulator connections living {lifetime:g} s",
        f"(machine: {os.cpu_count()} cores, shared and loaded; relay, emulator and clients on it)",
        "",
        "| mode | sessions | switches | p50 ms | p99 ms | max ms | handshake p50 ms "
        "| sessions failed | relay CPU % | emulator CPU % | machine busy % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.mode} | {r.sessions} | {r.switches} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.max_ms:.1f} | {r.connect_p50_ms:.1f} | {r.failed_sessions} "
        f"| {r.relay_cpu_percent:.0f} | {r.emulator_cpu_percent:.0f} "
        f"| {r.machine_busy_percent:.0f} |"
        for r in results
    ]
    return "\n".join(lines)


def _cpu_percent(before: Sample, after: Sample) -> float:
    """Percent of one core a process used between two samples."""
    wall = after.at - before.at
    return 100 * (after.cpu_seconds - before.cpu_seconds) / wall if wall > 0 else 0.0


def _busy_percent(before: Sample, after: Sample) -> float:
    """How busy all the machine's cores were between two samples, whatever ran on them."""
    busy = sum(after.core_busy_seconds.values()) - sum(before.core_busy_seconds.values())
    total = sum(after.core_total_seconds.values()) - sum(before.core_total_seconds.values())
    return 100 * busy / total if total > 0 else 0.0


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
