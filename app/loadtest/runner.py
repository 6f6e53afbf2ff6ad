"""Run a load test: ramp sessions up, measure a steady window, drain, report.

Timeline of a run:

    |-- ramp-up: session i opens at i/N of it --|-- window: `duration` --|-- drain --|
                                      all opened ^             stop sending ^

The window opens once every session has opened or given up, so its figures describe N live
sessions and not the handshakes. Everything is bounded by `LoadConfig.deadline_seconds`.
Sessions send when one shared `Pacer` says so; answers are handled in transport callbacks.

With a storm (`storm_sessions`), that many more sessions open all at once `storm_at` into the
window (a reconnect storm after a replica restart), from a worker process started beforehand
(`app.loadtest.storm`: opening them here would delay the frames timed here); they hold their
session without sending and close with the others. The window lasts at least until the storm
has settled, so every frame sent during it is measured.

    |-- ramp-up --|-- window ---------------------------------|-- drain --|
                        storm_at ^ N connects at once ^ last one set up
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.loadtest.config import LoadConfig
from app.loadtest.exchange import exchange_for
from app.loadtest.pacer import Pacer
from app.loadtest.probe import AudioProbe
from app.loadtest.recorder import Recorder
from app.loadtest.report import LoadReport, build_report
from app.loadtest.session import Endpoint, Session
from app.loadtest.stats import summarize_ns
from app.loadtest.storm import StormWorker, StormWorkerError


@dataclass(frozen=True)
class Progress:
    """A snapshot printed while the run goes on."""

    elapsed_seconds: float
    phase: str  # "ramp-up", "measuring", "draining"
    sessions_open: int
    sessions_requested: int
    sent_per_second: float
    answered_per_second: float
    recent_p50_ms: float | None
    recent_p99_ms: float | None
    errors: int


ProgressCallback = Callable[[Progress], None]


async def run_load(config: LoadConfig, on_progress: ProgressCallback | None = None) -> LoadReport:
    """Drive `config.sessions` sessions against `config.url` and measure them."""
    recorder = Recorder(config.sessions, config.storm_sessions)
    stop_sending = asyncio.Event()
    endpoint = Endpoint.from_config(config)
    pacer = Pacer(round(config.interval_seconds * 1e9), config.sessions)
    probe = None if config.text_only else AudioProbe(config.chunk_ms)

    async def session_task(index: int) -> None:
        await asyncio.sleep(config.ramp_up_seconds * index / config.sessions)
        exchange = exchange_for(config, probe, index)
        session = Session(index, config, endpoint, exchange, recorder, pacer)
        await session.run(stop_sending)

    async def storm(worker: StormWorker) -> None:
        await asyncio.sleep(config.storm_delay_seconds)
        recorder.count_errors(await worker.open(recorder.storm))

    reporter = None
    if on_progress is not None:
        reporter = asyncio.create_task(_report_progress(config, recorder, on_progress))
    pacing = asyncio.create_task(pacer.run())
    tasks = [asyncio.create_task(session_task(index)) for index in range(config.sessions)]
    worker: StormWorker | None = None
    try:
        async with asyncio.timeout(config.deadline_seconds):
            if config.storm_sessions:
                worker = await StormWorker.start(config)  # ready long before the storm is due
            await _wait_until_settled(config, recorder)
            recorder.start_window()
            if worker is not None:
                await asyncio.gather(asyncio.sleep(config.duration_seconds), storm(worker))
            else:
                await asyncio.sleep(config.duration_seconds)
            recorder.end_window()
            stop_sending.set()
            await asyncio.gather(*tasks)
            if worker is not None:
                close_codes, errors = await worker.close()
                recorder.close_codes.update(close_codes)
                recorder.count_errors(errors)
    except StormWorkerError as exc:
        if recorder.window_end_ns is None:
            recorder.end_window()
        recorder.errors[str(exc)] += 1
    except TimeoutError:
        if recorder.window_end_ns is None:
            recorder.end_window()
        unfinished = sum(not task.done() for task in tasks)
        recorder.errors["session still running at the deadline"] += unfinished
    finally:
        helpers = [pacing] if reporter is None else [pacing, reporter]
        for task in [*tasks, *helpers]:
            task.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)
        if worker is not None:
            await worker.kill()
    recorder.missed_slots = pacer.missed_slots
    return build_report(config, recorder)


async def _wait_until_settled(config: LoadConfig, recorder: Recorder) -> None:
    """Sleep through the ramp-up, then until every session has opened or given up."""
    await asyncio.sleep(config.ramp_up_seconds)
    await recorder.all_settled.wait()


async def _report_progress(
    config: LoadConfig,
    recorder: Recorder,
    on_progress: ProgressCallback,
) -> None:
    started = time.monotonic()
    sent, answered, samples = 0, 0, 0
    while True:
        await asyncio.sleep(config.progress_interval_seconds)
        recent = summarize_ns(recorder.latencies_ns[samples:])
        on_progress(
            Progress(
                elapsed_seconds=time.monotonic() - started,
                phase=recorder.phase,
                sessions_open=recorder.active,
                sessions_requested=config.sessions,
                sent_per_second=(recorder.sent - sent) / config.progress_interval_seconds,
                answered_per_second=(recorder.answered - answered)
                / config.progress_interval_seconds,
                recent_p50_ms=recent.p50 if recent.count else None,
                recent_p99_ms=recent.p99 if recent.count else None,
                errors=recorder.error_count,
            )
        )
        sent, answered, samples = recorder.sent, recorder.answered, len(recorder.latencies_ns)
