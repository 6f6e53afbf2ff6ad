"""A reconnect storm, opened from a process of its own: N sessions connect at once.

Why a separate process: opening hundreds of connections is CPU work for the load generator
too. Done on the event loop that times the streaming sessions, it delays their frames and
answers by as much as the proxy under test would, and the storm's "added latency" measures
the generator. In its own process, the storm competes for the CPU only through the kernel's
scheduler, and the streaming sessions' timing stays the proxy's.

The worker is started before the storm is due (an interpreter starts in hundreds of ms), says
`ready`, waits for `go`, opens every session at once, reports when each has set up or failed,
holds them (storm sessions send nothing) until `stop`, closes them and reports how they
closed. One JSON object per line on stdout; the configuration (with the credential) comes on
stdin, never on the command line. `time.monotonic_ns()` is the system-wide CLOCK_MONOTONIC,
so its times compare with the parent's.

    parent                          worker (`main()` below, in a new interpreter)
    config on stdin ----------->    imports, TLS context
                    <-----------    {"event": "ready"}
    "go" (storm due) ---------->    N connects at once
                    <-----------    {"event": "settled", times, setup samples, errors}
    "stop" (run ends) --------->    closing handshakes
                    <-----------    {"event": "closed", close codes, errors}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from app.loadtest.config import LoadConfig
from app.loadtest.exchange import exchange_for
from app.loadtest.pacer import Pacer
from app.loadtest.probe import AudioProbe
from app.loadtest.recorder import STORM_ERROR_PREFIX, Recorder, StormRecord
from app.loadtest.session import Endpoint, Session

# Not `-m app.loadtest.storm`: the package imports this module first, which runpy warns about.
WORKER_COMMAND = "from app.loadtest.storm import main; main()"


class StormWorkerError(Exception):
    """The storm process did not answer as agreed (it crashed, or said something else)."""


class StormWorker:
    """The parent's handle on the storm process."""

    def __init__(self, process: asyncio.subprocess.Process, config: LoadConfig) -> None:
        self._process = process
        self._config = config

    @classmethod
    async def start(cls, config: LoadConfig) -> StormWorker:
        """Start the worker and wait until it is ready to open the storm."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER_COMMAND,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process, config)
        try:
            worker._send(json.dumps(_config_to_json(config)))
            await worker._expect("ready")
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def open(self, storm: StormRecord) -> dict[str, int]:
        """Open the storm now; fill `storm` once every session set up or failed; return the
        errors by kind."""
        self._send("go")
        settled = await self._expect("settled")
        storm.started_ns, storm.ended_ns = settled["started_ns"], settled["ended_ns"]
        storm.started_unix, storm.ended_unix = settled["started_unix"], settled["ended_unix"]
        storm.connect_ns, storm.setup_ns = settled["connect_ns"], settled["setup_ns"]
        storm.opened, storm.failed = settled["opened"], settled["failed"]
        storm.all_settled.set()
        errors: dict[str, int] = settled["errors"]
        return errors

    async def close(self) -> tuple[dict[int, int], dict[str, int]]:
        """Close the storm's sessions; their close codes and the errors that came after
        opening (a session the peer closed early)."""
        self._send("stop")
        closed = await self._expect("closed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.open_timeout_seconds):
                await self._process.wait()
        codes = {int(code): count for code, count in closed["close_codes"].items()}
        return codes, closed["errors"]

    async def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")

    async def _expect(self, event: str) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        line = await stdout.readline()
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            message = {}
        if message.get("event") != event:
            raise StormWorkerError(f"storm worker: expected {event!r}, got {line[:200]!r}")
        return message


def _config_to_json(config: LoadConfig) -> dict[str, Any]:
    values = asdict(config)
    values["ca_file"] = None if config.ca_file is None else str(config.ca_file)
    return values


def _config_from_json(values: dict[str, Any]) -> LoadConfig:
    known = {field.name for field in fields(LoadConfig)}
    values = {key: value for key, value in values.items() if key in known}
    if values.get("ca_file") is not None:
        values["ca_file"] = Path(values["ca_file"])
    return LoadConfig(**values)


# --- the worker process ------------------------------------------------------------------


async def _worker() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = _config_from_json(json.loads(await reader.readline()))
    endpoint = Endpoint.from_config(config)
    recorder = Recorder(0, config.storm_sessions)
    pacer = Pacer(round(config.interval_seconds * 1e9), 1)  # storm sessions never send
    probe = None if config.text_only else AudioProbe(config.chunk_ms)
    stop = asyncio.Event()

    async def storm_session(index: int) -> None:
        exchange = exchange_for(config, probe, index)
        session = Session(index, config, endpoint, exchange, recorder, pacer, storm=True)
        await session.run(stop)

    _say({"event": "ready"})
    if (await reader.readline()).strip() != b"go":
        return
    storm = recorder.storm
    storm.start()
    first = config.sessions  # indexes after the streaming sessions': answers stay traceable
    tasks = [
        asyncio.create_task(storm_session(index))
        for index in range(first, first + config.storm_sessions)
    ]
    await storm.all_settled.wait()
    _say(
        {
            "event": "settled",
            "started_ns": storm.started_ns,
            "ended_ns": storm.ended_ns,
            "started_unix": storm.started_unix,
            "ended_unix": storm.ended_unix,
            "connect_ns": storm.connect_ns,
            "setup_ns": storm.setup_ns,
            "opened": storm.opened,
            "failed": storm.failed,
            "errors": dict(recorder.errors),
        }
    )
    opening_errors = dict(recorder.errors)
    await reader.readline()  # "stop", or EOF if the parent is gone: close either way
    stop.set()
    await asyncio.gather(*tasks)
    later = {kind: n - opening_errors.get(kind, 0) for kind, n in recorder.errors.items()}
    _say(
        {
            "event": "closed",
            "close_codes": {str(code): n for code, n in recorder.close_codes.items()},
            "errors": {_storm_kind(kind): n for kind, n in later.items() if n > 0},
        }
    )


def _storm_kind(kind: str) -> str:
    return kind if kind.startswith(STORM_ERROR_PREFIX) else STORM_ERROR_PREFIX + kind


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    # The same event loop as the generator (see cli._run_with_fast_loop), for the same reason.
    try:
        import uvloop
    except ImportError:
        asyncio.run(_worker())
        return
    uvloop.run(_worker())
