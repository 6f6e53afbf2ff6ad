"""`live-relay loadtest`: simulated voice sessions against a Live endpoint, with latency figures.

Exit status: 0 when every session ran cleanly and every frame was answered, 1 otherwise, 2 on
bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from app.loadtest.config import DEFAULT_MODEL, LoadConfig
from app.loadtest.report import LoadReport, render_table
from app.loadtest.runner import Progress, run_load


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Drive N concurrent simulated voice sessions against a Live endpoint (the relay, or the "
        "emulator in --echo-audio mode as the no-relay baseline) and report round-trip latency, "
        "frame rates, setup times, errors and close codes."
    )
    parser.add_argument(
        "url", help="endpoint, e.g. wss://relay:8443/v1/live or ws://127.0.0.1:9000/ws/..."
    )
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions (default 1)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured once all are open (10)"
    )
    parser.add_argument(
        "--ramp-up", type=float, default=1.0, help="seconds over which sessions open (1)"
    )
    parser.add_argument(
        "--chunk-ms", type=int, default=40, help="audio per frame, sent every as many ms (40)"
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="text-only mode: a text turn per --turn-interval, timed until turnComplete",
    )
    parser.add_argument(
        "--turn-interval", type=float, default=2.0, help="seconds between text turns (2)"
    )
    parser.add_argument(
        "--model",
        default="",
        help=f"model sent in setup, as given (default: {DEFAULT_MODEL}, as a full Vertex path "
        "when the url is the emulator's Vertex path)",
    )
    credential = parser.add_mutually_exclusive_group()
    credential.add_argument("--api-key", help="sent as `Authorization: Bearer KEY`")
    credential.add_argument(
        "--api-key-file", type=Path, help="read the key from this file (keeps it out of `ps`)"
    )
    parser.add_argument("--ca-file", type=Path, help="PEM CA to trust for a wss:// url")
    parser.add_argument(
        "--compression", action="store_true", help="offer permessage-deflate (off by default)"
    )
    parser.add_argument(
        "--resumption",
        action="store_true",
        help="ask for session resumption in the setup, as a long-lived SDK session does "
        "(the endpoint then sends handle updates)",
    )
    parser.add_argument(
        "--open-timeout", type=float, default=10.0, help="seconds to connect and set up (10)"
    )
    parser.add_argument(
        "--drain", type=float, default=2.0, help="seconds to wait for the last answers (2)"
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=0,
        metavar="N",
        help="reconnect storm: open N more sessions all at once while the --sessions ones "
        "stream, and report their setup times, admissions/s and the streaming sessions' added "
        "p99 (default 0: no storm)",
    )
    parser.add_argument(
        "--storm-at",
        type=float,
        metavar="SECONDS",
        help="when the storm starts, in seconds into the measured window (default: a third of "
        "--duration)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        config = _config_from(args)
    except (ValueError, OSError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    on_progress = None if args.quiet else _print_progress
    report = _run_with_fast_loop(lambda: run_load(config, on_progress))
    print(json.dumps(report.as_dict(), indent=2) if args.json else render_table(report))
    return 0 if report.error_count == 0 and report.frames_lost == 0 else 1


def _config_from(args: argparse.Namespace) -> LoadConfig:
    api_key: str | None = args.api_key
    if args.api_key_file is not None:
        api_key = args.api_key_file.read_text().strip()
    return LoadConfig(
        url=args.url,
        model=args.model,
        sessions=args.sessions,
        duration_seconds=args.duration,
        ramp_up_seconds=args.ramp_up,
        chunk_ms=args.chunk_ms,
        text_only=args.text,
        turn_interval_seconds=args.turn_interval,
        api_key=api_key,
        ca_file=args.ca_file,
        compression=args.compression,
        resumption=args.resumption,
        open_timeout_seconds=args.open_timeout,
        drain_seconds=args.drain,
        storm_sessions=args.storm,
        storm_at_seconds=args.storm_at,
    )


def _run_with_fast_loop(main: Callable[[], Coroutine[Any, Any, LoadReport]]) -> LoadReport:
    # In the benchmark the generator shares a core with the emulator: uvloop makes it cheaper per
    # frame, which keeps it from becoming the bottleneck.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def _print_progress(progress: Progress) -> None:
    latency = (
        "-"
        if progress.recent_p50_ms is None
        else f"p50 {progress.recent_p50_ms:.2f} ms, p99 {progress.recent_p99_ms:.2f} ms"
    )
    print(
        f"[{progress.elapsed_seconds:6.1f}s] {progress.phase:<9} "
        f"{progress.sessions_open}/{progress.sessions_requested} open, "
        f"sent {progress.sent_per_second:.0f}/s, answered {progress.answered_per_second:.0f}/s, "
        f"{latency}, errors {progress.errors}",
        file=sys.stderr,
        flush=True,
    )
