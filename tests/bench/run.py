"""`make bench`: the emulator directly, then proxies in front of it, at rising session counts.

    python -m tests.bench.run                      # 1, 50, 100, 200, 300, 400 sessions, 15 s each
    python -m tests.bench.run --sessions 1,50 --duration 5 --targets direct,relay
    python -m tests.bench.run --sessions 100 --storm 500 --duration 6   # reconnect storm

The proxy under test and Redis (which only the relay uses) are pinned to one core, the load
generator and the upstream to the other (`taskset`; `--redis-core load` puts Redis there), so
figures are comparable run to run. The upstream is the emulator's echo contract served by
`tests.bench.echo_upstream` (lean enough to leave the load core room), or the emulator itself
with `--upstream emulator`. Each step starts its proxy afresh, warms it up with one short
session, then samples it from /proc while `live-relay loadtest` measures. The Markdown table
(and the raw figures as JSON) go to bench-results/ and stdout.
Everything is bounded: session counts, durations, and every process's lifetime.
With `--storm N`, each step instead opens N sessions at once while `--sessions` stream, and the
table reports admissions (see `tests.bench.storm`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.machine import Machine, describe_machine
from tests.bench.processes import pin_existing, pinned, python, require_taskset, running
from tests.bench.procstat import Sampler
from tests.bench.results import Step, markdown
from tests.bench.storm import SAMPLE_SECONDS, StormStep, storm_markdown, storm_step
from tests.bench.targets import DEFAULT_TARGETS, TARGETS, Endpoint, Services, Target
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

MAX_SESSIONS = 2000
MAX_DURATION_SECONDS = 120
WARM_UP_SECONDS = 1.0
LOADTEST_GRACE_SECONDS = 60  # beyond its own deadline, before the run gives up on it
UPSTREAMS = {  # name -> (module and arguments, run with --port; description)
    "lean-echo": (("tests.bench.echo_upstream",), "lean echo with the emulator's echo contract"),
    "lean-echo-unconfirmed": (
        ("tests.bench.echo_upstream", "--never-confirm"),
        "lean echo that never confirms input (no sessionResumptionUpdate)",
    ),
    "emulator": (("tests.bench.emulator",), "the emulator in echo mode, under uvloop"),
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    require_taskset()
    if args.proxy_core == args.load_core or os.cpu_count() == 1:
        print("warning: proxy and load share a core; figures will not compare", file=sys.stderr)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir = (args.out / f"run-{stamp}").resolve()
    workdir.mkdir(parents=True)
    machine = describe_machine()
    if args.storm:
        return _storm_run(args, workdir, stamp, machine)
    with contextlib.ExitStack() as stack:
        services = _start_services(stack, workdir, args)
        steps = [
            _measure(TARGETS[name], services, sessions, args)
            for sessions in args.sessions
            for name in args.targets
        ]
    settings = [
        _pinning(args),
        f"- Each step: sessions opened over max(1 s, sessions/100 s), then {args.duration:g} s "
        f"measured; {args.chunk_ms} ms of 16 kHz PCM per frame both ways; no compression "
        "unless the target says so",
        *(f"- `{name}`: {TARGETS[name].description}" for name in args.targets),
    ]
    table = markdown(steps, machine, settings)
    (args.out / f"bench-{stamp}.md").write_text(table)
    raw = {"machine": machine.__dict__, "steps": [step.as_dict() for step in steps]}
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(raw, indent=2))
    print(table)
    return 0


def _storm_run(args: argparse.Namespace, workdir: Path, stamp: str, machine: Machine) -> int:
    with contextlib.ExitStack() as stack:
        services = _start_services(stack, workdir, args)
        steps = [
            _measure_storm(TARGETS[name], services, sessions, args)
            for sessions in args.sessions
            for name in args.targets
        ]
    settings = [
        _pinning(args),
        f"- Each step: the streaming sessions open over max(1 s, sessions/100 s) and stream "
        f"{args.chunk_ms} ms chunks; {args.duration / 3:g} s into the {args.duration:g} s window "
        f"{args.storm} more sessions connect at once, set up, and hold their session idle",
        *(f"- `{name}`: {TARGETS[name].description}" for name in args.targets),
    ]
    table = storm_markdown(steps, machine, settings)
    (args.out / f"storm-{stamp}.md").write_text(table)
    raw = {"machine": machine.__dict__, "steps": [step.as_dict() for step in steps]}
    (args.out / f"storm-{stamp}.json").write_text(json.dumps(raw, indent=2))
    print(table)
    return 0


def _redis_core(args: argparse.Namespace) -> int:
    return int(args.proxy_core if args.redis_core == "proxy" else args.load_core)


def _pinning(args: argparse.Namespace) -> str:
    return (
        f"- Pinning: proxy on core {args.proxy_core}; load generator and upstream on core "
        f"{args.load_core}; Redis on core {_redis_core(args)}; upstream: "
        f"{UPSTREAMS[args.upstream][1]}"
    )


def _measure_storm(
    target: Target, services: Services, sessions: int, args: argparse.Namespace
) -> StormStep:
    print(f"-- {target.name}: storm of {args.storm} over {sessions}", file=sys.stderr, flush=True)
    cores = (args.proxy_core, args.load_core)
    with target.start(services) as endpoint:
        _loadtest(endpoint, target, args, sessions=1, duration=WARM_UP_SECONDS)
        with Sampler(endpoint.pid, cores, interval=SAMPLE_SECONDS) as sampler:
            time.sleep(0.5)
            report = _loadtest(endpoint, target, args, sessions, args.duration, storm=args.storm)
    step = storm_step(
        target.name,
        sessions,
        report,
        sampler,
        has_proxy=endpoint.pid is not None,
        load_core=args.load_core,
    )
    storm = step.storm
    print(
        f"   {storm['opened']}/{storm['requested']} in {storm['seconds']:.2f} s, setup p99 "
        f"{storm['setup_ms']['p99']:.1f} ms, added p99 {storm['streaming_added_p99_ms']} ms, "
        f"CPU ms/admission {step.proxy_cpu_ms_per_admission}, errors + lost {step.errors}",
        file=sys.stderr,
        flush=True,
    )
    return step


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions",
        type=_session_counts,
        default=(1, 50, 100, 200, 300, 400),
        help="comma-separated session counts (default 1,50,100,200,300,400)",
    )
    parser.add_argument(
        "--duration", type=_duration, default=15.0, help="seconds measured per step (15)"
    )
    parser.add_argument(
        "--targets",
        type=_target_names,
        default=_default_targets(),
        help=f"comma-separated, from: {', '.join(TARGETS)} (default: {','.join(DEFAULT_TARGETS)}"
        ", nginx only when installed)",
    )
    parser.add_argument(
        "--upstream",
        choices=list(UPSTREAMS),
        default="lean-echo",
        help="what answers the audio (default lean-echo: the emulator's echo contract, cheaply)",
    )
    parser.add_argument("--chunk-ms", type=int, default=40, help="audio per frame (40)")
    parser.add_argument(
        "--storm",
        type=int,
        default=0,
        metavar="N",
        help="reconnect storm: open N sessions at once while --sessions stream (default 0)",
    )
    parser.add_argument("--proxy-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument(
        "--redis-core",
        choices=("proxy", "load"),
        default="proxy",
        help="where Redis runs (proxy): beside the load generator, a busy generator starves it "
        "and the relay's admissions wait for Redis's turn on that core, not for the relay",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    return parser


def _session_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if not all(1 <= count <= MAX_SESSIONS for count in counts):
        raise argparse.ArgumentTypeError(f"session counts must be within 1..{MAX_SESSIONS}")
    return counts


def _duration(text: str) -> float:
    seconds = float(text)
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise argparse.ArgumentTypeError(f"duration must be within 1..{MAX_DURATION_SECONDS} s")
    return seconds


def _target_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown targets {unknown}; known: {list(TARGETS)}")
    if "direct" not in names:
        names = ("direct", *names)  # every added latency is measured against it
    return names


def _default_targets() -> tuple[str, ...]:
    installed = shutil.which("nginx") is not None
    return tuple(name for name in DEFAULT_TARGETS if name != "nginx" or installed)


def _start_services(
    stack: contextlib.ExitStack, workdir: Path, args: argparse.Namespace
) -> Services:
    redis = RedisServer(workdir)
    redis.start()
    stack.callback(redis.stop)
    assert redis.process is not None
    pin_existing(_redis_core(args), redis.process.pid)

    port = free_port()
    module, *arguments = UPSTREAMS[args.upstream][0]
    upstream = pinned(args.load_core, python("-m", module, *arguments, f"--port={port}"))
    stack.enter_context(running(upstream, log=workdir / "upstream.log", port=port))

    key_file = workdir / "api-key"
    key_file.touch(mode=0o600)
    key_file.write_text("lr_bench_" + secrets.token_hex(16))
    return Services(f"ws://127.0.0.1:{port}", redis.url, key_file, workdir, args.proxy_core)


def _measure(target: Target, services: Services, sessions: int, args: argparse.Namespace) -> Step:
    print(f"-- {target.name} at {sessions} sessions", file=sys.stderr, flush=True)
    cores = (args.proxy_core, args.load_core)
    with target.start(services) as endpoint:
        # The first session pays for lazy imports and first-use allocations: not a per-session cost.
        _loadtest(endpoint, target, args, sessions=1, duration=WARM_UP_SECONDS)
        with Sampler(endpoint.pid, cores) as sampler:
            time.sleep(0.5)
            report = _loadtest(endpoint, target, args, sessions, args.duration)
    window = report["window"]
    usage = sampler.usage(window["started_at"], window["ended_at"])
    frames = report["frames"]
    forwarded = (frames["sent_per_second"] + frames["answered_per_second"]) * usage.wall_seconds
    cpu_percent = per_frame = rss = None
    if endpoint.pid is not None:
        cpu_percent = round(usage.cpu_percent, 1)
        per_frame = round(1e6 * usage.cpu_seconds / forwarded, 1) if forwarded else None
        grown = usage.peak_rss_bytes - sampler.samples[0].rss_bytes
        rss = round(grown / 1024 / sessions, 1)
    step = Step(
        target=target.name,
        sessions=sessions,
        report=report,
        proxy_cpu_percent=cpu_percent,
        proxy_cpu_us_per_frame=per_frame,
        proxy_rss_kb_per_session=rss,
        load_core_busy_percent=round(usage.core_busy_percent[args.load_core], 1),
        proxy_core_busy_percent=round(usage.core_busy_percent[args.proxy_core], 1),
    )
    print(
        f"   p50 {step.p50:.2f} ms, p99 {step.p99:.2f} ms, proxy CPU {cpu_percent} %, "
        f"load core {step.load_core_busy_percent:.0f} %, errors + lost {step.errors}",
        file=sys.stderr,
        flush=True,
    )
    return step


def _loadtest(
    endpoint: Endpoint,
    target: Target,
    args: argparse.Namespace,
    sessions: int,
    duration: float,
    *,
    storm: int = 0,
) -> dict[str, Any]:
    ramp_up = max(1.0, sessions / 100)
    command = pinned(
        args.load_core,
        python(
            "-m",
            "app",
            "loadtest",
            endpoint.url,
            *endpoint.loadtest_options,
            *target.loadtest_options,
            f"--sessions={sessions}",
            f"--duration={duration}",
            f"--ramp-up={ramp_up}",
            f"--chunk-ms={args.chunk_ms}",
            f"--storm={storm}",
            "--json",
            "--quiet",
        ),
    )
    timeout = ramp_up + duration + LOADTEST_GRACE_SECONDS
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode not in (0, 1):  # 1: it ran, and counted errors
        raise RuntimeError(f"loadtest failed ({result.returncode}):\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
