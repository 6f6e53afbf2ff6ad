"""What one held live session costs the relay's Python heap, by component (tracemalloc).

    python -m tests.bench.session_memory --sessions 200

Starts Redis, the echo upstream and `live-relay serve` (the real command, run under
tracemalloc by `python -m tests.bench.session_memory traced-serve`), opens a few sessions and
closes them (so first-use caches are warm), snapshots the relay's heap, opens `--sessions`
sessions that each send their setup, get `setupComplete` and stay idle, snapshots again, and
prints the difference per session, grouped by the component that allocated it. tracemalloc
sees the Python heap only: not libuv's C allocations, malloc's fragmentation or kernel socket
buffers, which is why the storm bench's "RSS KB / held session" is larger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from app.loadtest.connection import LiveConnection
from tests.bench.processes import python, running
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

SNAPSHOT_ENV = "SESSION_MEMORY_SNAPSHOT"
FRAMES = 30
WAVE = 10

# (component, path fragments): a traced block belongs to the first component whose fragment
# appears in its innermost frame outside the standard library and these helper packages.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("upstream leg: lean connection", ("app/relay/upstream/lean_upstream.py",)),
    ("upstream leg: websockets asyncio client", ("websockets/asyncio/",)),
    ("upstream leg: connector", ("app/relay/upstream/upstream.py", "websockets/client.py")),
    ("client leg: uvicorn WebSocket protocol", ("uvicorn/protocols/websockets/",)),
    ("client leg: websockets server protocol", ("websockets/server.py",)),
    ("websockets protocol core (either leg)", ("websockets/",)),
    ("ASGI stack (uvicorn, Starlette, FastAPI)", ("uvicorn/", "starlette/", "fastapi/")),
    ("relay session (session.py)", ("app/relay/session/session.py",)),
    ("relay endpoint (endpoint.py, auth, setup)", ("app/relay/", "app/auth/")),
    ("quota lease, Redis", ("app/quota/", "redis/")),
    ("metrics, logging", ("prometheus_client/", "app/metrics.py", "app/logs.py")),
)
# Frames skipped when looking for who allocated: containers and the event loop machinery.
# (The stdlib's asyncio only: "websockets/asyncio/" is the upstream leg.)
GENERIC = (
    "python3.11/asyncio/",
    "/contextlib.py",
    "/dataclasses.py",
    "/typing.py",
    "<frozen",
    "/enum.py",
)


def site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame outside the generic machinery, as file:line."""
    for frame in reversed(trace):
        if not any(part in frame.filename for part in GENERIC):
            return f"{_short(frame.filename)}:{frame.lineno}"
    return "asyncio"


def classify(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(trace):  # tracemalloc lists the oldest frame first
        name = frame.filename
        if any(part in name for part in GENERIC):
            continue
        for component, parts in COMPONENTS:
            if any(part in name for part in parts):
                return component
        return "other: " + _short(name)
    return "asyncio (no caller frame)"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/session-memory/", "/sm-base/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return "/".join(filename.split("/")[-2:])


def traced_serve() -> int:
    """`live-relay serve`; SIGUSR1 writes a tracemalloc snapshot to $SESSION_MEMORY_SNAPSHOT.

    Tracing starts at the first signal: traced from the start, the relay's imports take longer
    than a start-up deadline, and what was allocated before the first snapshot is not measured.
    """
    path = os.environ[SNAPSHOT_ENV]

    def dump(_signum: int, _frame: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        tracemalloc.take_snapshot().dump(path + ".part")
        os.replace(path + ".part", path)

    signal.signal(signal.SIGUSR1, dump)
    from app.cli import main

    return main(["serve"])


async def _open(url: str, key: str, setup: bytes, held: list[LiveConnection]) -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(_data: bytes, _at: int) -> None:
        if not ready.done():
            ready.set_result(None)

    connection = await LiveConnection.open(
        url,
        on_message=on_message,
        headers={"Authorization": f"Bearer {key}"},
        ssl_context=None,
        compression=False,
    )
    connection.send_text(setup)
    async with asyncio.timeout(30):
        await ready
    held.append(connection)


async def _hold(url: str, key: str, count: int, held: list[LiveConnection]) -> None:
    setup = json.dumps({"setup": {"model": "gemini-live-2.5-flash"}}).encode()
    # In waves under the default limit of admissions pending per credential (16).
    for start in range(0, count, WAVE):
        batch = range(start, min(start + WAVE, count))
        await asyncio.gather(*(_open(url, key, setup, held) for _ in batch))


async def _close_all(held: list[LiveConnection]) -> None:
    await asyncio.gather(*(connection.close(2.0) for connection in held))
    held.clear()


def _snapshot(pid: int, path: Path) -> tracemalloc.Snapshot:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the relay wrote no snapshot")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


@contextlib.contextmanager
def _relay(
    workdir: Path, key: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int, Path]]:
    with contextlib.ExitStack() as stack:
        redis = RedisServer(workdir)
        redis.start()
        stack.callback(redis.stop)
        upstream_port = free_port()
        stack.enter_context(
            running(
                python("-m", "tests.bench.echo_upstream", f"--port={upstream_port}"),
                log=workdir / "upstream.log",
                port=upstream_port,
            )
        )
        port = free_port()
        snapshot = workdir / "heap.snapshot"
        env = {
            "RELAY_PORT": str(port),
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": f"ws://127.0.0.1:{upstream_port}",
            "RELAY_API_KEYS": key,
            "RELAY_REDIS_URL": redis.url,
            "RELAY_METRICS_ENABLED": "true",
            "RELAY_DEFAULT_MAX_SESSIONS": "100000",
            "RELAY_DRAIN_SECONDS": "1",
            SNAPSHOT_ENV: str(snapshot),
            **(extra_env or {}),
        }
        command = python("-m", "tests.bench.session_memory", "traced-serve")
        with running(command, log=workdir / "relay.log", port=port, env=env) as process:
            yield f"ws://127.0.0.1:{port}/v1/live", process.pid, snapshot


Rows = list[tuple[str, int, int]]


def measure(sessions: int, workdir: Path) -> tuple[Rows, Rows]:
    """(component, bytes, objects) and (allocation site, ...) per held session, largest first."""
    key = "lr_bench_" + secrets.token_hex(16)
    held: list[LiveConnection] = []
    with _relay(workdir, key) as (url, pid, snapshot_path):

        async def warm_up() -> None:
            await _hold(url, key, 20, held)
            await _close_all(held)

        asyncio.run(warm_up())
        time.sleep(1)
        before = _snapshot(pid, snapshot_path)

        async def hold_and_snapshot() -> tracemalloc.Snapshot:
            await _hold(url, key, sessions, held)
            await asyncio.sleep(1)  # let handshakes' garbage go
            after = await asyncio.to_thread(_snapshot, pid, snapshot_path)
            await _close_all(held)
            return after

        after = asyncio.run(hold_and_snapshot())
    totals: dict[str, list[int]] = {}
    sites: dict[str, list[int]] = {}
    for diff in after.compare_to(before, "traceback"):
        for key, groups in ((classify(diff.traceback), totals), (site(diff.traceback), sites)):
            row = groups.setdefault(key, [0, 0])
            row[0] += diff.size_diff
            row[1] += diff.count_diff
    return _per_session(totals, sessions), _per_session(sites, sessions)


def _per_session(groups: dict[str, list[int]], sessions: int) -> Rows:
    rows = [(name, size // sessions, count // sessions) for name, (size, count) in groups.items()]
    return sorted(rows, key=lambda row: -row[1])


def table(rows: Rows, sessions: int) -> str:
    lines = [
        f"Python heap per held idle session ({sessions} sessions, tracemalloc diff / N)",
        "",
        "| component (allocated in) | bytes / session | objects / session |",
        "|---|---:|---:|",
    ]
    shown = [row for row in rows if abs(row[1]) >= 64]
    rest = [row for row in rows if abs(row[1]) < 64]
    lines += [f"| {name} | {size:,} | {count} |" for name, size, count in shown]
    if rest:
        size, count = sum(r[1] for r in rest), sum(r[2] for r in rest)
        lines.append(f"| (rows under 64 B) | {size:,} | {count} |")
    size, count = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines.append(f"| **total** | **{size:,}** | **{count}** |")
    return "\n".join(lines)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure_rss(sessions: int, workdir: Path, wave: int) -> float:
    """RSS KB per held session, no tracing: `wave` sessions opened at a time."""
    key = "lr_bench_" + secrets.token_hex(16)
    held: list[LiveConnection] = []
    with _relay(workdir, key, {"RELAY_MAX_PENDING_ADMISSIONS_PER_CREDENTIAL": "64"}) as (
        url,
        pid,
        _snapshot_path,
    ):

        async def run() -> float:
            setup = json.dumps({"setup": {"model": "gemini-live-2.5-flash"}}).encode()
            await _hold(url, key, 20, held)
            await _close_all(held)
            await asyncio.sleep(1)
            before = _rss_kb(pid)
            for start in range(0, sessions, wave):
                batch = range(start, min(start + wave, sessions))
                await asyncio.gather(*(_open(url, key, setup, held) for _ in batch))
            await asyncio.sleep(1)
            after = _rss_kb(pid)
            await _close_all(held)
            return (after - before) / sessions

        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["traced-serve"]:
        return traced_serve()
    parser = argparse.ArgumentParser(prog="python -m tests.bench.session_memory")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--sites", type=int, default=0, help="also list the N largest sites")
    parser.add_argument(
        "--rss-wave",
        type=int,
        default=0,
        help="instead: RSS KB per held session, untraced, opening this many at a time",
    )
    options = parser.parse_args(args)
    if options.rss_wave:
        with tempfile.TemporaryDirectory(prefix="session-memory-") as directory:
            per = measure_rss(options.sessions, Path(directory), options.rss_wave)
        print(
            f"RSS per held session, {options.sessions} opened {options.rss_wave} at a time: "
            f"{per:.1f} KB"
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="session-memory-") as directory:
        rows, sites = measure(options.sessions, Path(directory))
    print(table(rows, options.sessions))
    if options.sites:
        print("\n| allocation site | bytes / session | objects / session |\n|---|---:|---:|")
        for name, size, count in sites[: options.sites]:
            print(f"| {name} | {size:,} | {count} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
