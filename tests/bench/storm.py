"""`make bench --storm N`: a reconnect storm against each target, and its Markdown table.

Each step starts the target afresh, lets `--sessions` sessions stream, then opens N more at
once (`live-relay loadtest --storm`). Besides what loadtest measures (storm setup times,
admissions per second, the streaming sessions' p99 before and during the storm), the proxy is
sampled every 50 ms from /proc:

- CPU per admission: the proxy's CPU time over the storm minus what streaming alone cost over
  as long a span (its rate before the storm), divided by the sessions admitted; its inverse is
  the admissions one core can carry per second when it does nothing else.
- RSS per held session: resident memory after the storm minus before it, per storm session
  (storm sessions hold their session without sending, so this is what an open session costs).

The storm is opened by a process of its own (see `app.loadtest.storm`), pinned to the load
core with the generator, the upstream and Redis; the `direct` row (no proxy: the upstream
itself takes the storm) shows what that core contributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.bench.machine import Machine
from tests.bench.procstat import Sampler
from tests.bench.results import errors_and_lost, number

SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class StormStep:
    target: str
    streaming: int
    report: dict[str, Any]  # loadtest --json, with its "storm" part
    proxy_cpu_ms_per_admission: float | None
    proxy_rss_kb_per_session: float | None
    load_core_busy_percent: float

    @property
    def storm(self) -> dict[str, Any]:
        storm: dict[str, Any] = self.report["storm"]
        return storm

    @property
    def admissions_per_cpu_second(self) -> float | None:
        per = self.proxy_cpu_ms_per_admission
        return None if per is None or per <= 0 else round(1000 / per)

    @property
    def errors(self) -> int:
        return errors_and_lost(self.report)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "streaming": self.streaming,
            "proxy_cpu_ms_per_admission": self.proxy_cpu_ms_per_admission,
            "admissions_per_cpu_second": self.admissions_per_cpu_second,
            "proxy_rss_kb_per_session": self.proxy_rss_kb_per_session,
            "load_core_busy_percent": self.load_core_busy_percent,
            "loadtest": self.report,
        }


def storm_step(
    target: str,
    streaming: int,
    report: dict[str, Any],
    sampler: Sampler,
    *,
    has_proxy: bool,
    load_core: int,
) -> StormStep:
    """Cut the proxy's samples to the storm and to the streaming stretch before it."""
    storm = report["storm"]
    started, ended = storm["started_at"], storm["ended_at"]
    window_start = report["window"]["started_at"]
    cpu_per_admission = rss_per_session = None
    load_busy = 0.0
    if started is not None and ended is not None:
        during = sampler.usage_around(started, ended)
        load_busy = round(during.core_busy_percent[load_core], 1)
        if has_proxy and storm["opened"]:
            before = sampler.usage(window_start, started)
            streaming_cpu = before.cpu_seconds / before.wall_seconds * during.wall_seconds
            admission_cpu = max(0.0, during.cpu_seconds - streaming_cpu)
            cpu_per_admission = round(1000 * admission_cpu / storm["opened"], 3)
            rss_before = [s.rss_bytes for s in sampler.samples if s.at <= started][-1]
            rss_after = max(s.rss_bytes for s in sampler.samples if s.at >= ended)
            rss_per_session = round((rss_after - rss_before) / 1024 / storm["opened"], 1)
    return StormStep(target, streaming, report, cpu_per_admission, rss_per_session, load_busy)


def storm_markdown(steps: list[StormStep], machine: Machine, settings: list[str]) -> str:
    lines = [
        "# live-relay benchmark: reconnect storm",
        "",
        *machine.describe(),
        *settings,
        "",
        "| target | streaming + storm | admitted | storm s | admissions/s | storm setup p50 / "
        "p99 / max ms | streaming p99 before → during ms | added p99 | proxy CPU ms / admission "
        "| admissions / CPU-s | RSS KB / held session | load core busy % | errors + lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        storm = step.storm
        setup, before, during = (
            storm["setup_ms"],
            storm["streaming_before_ms"],
            storm["streaming_during_ms"],
        )
        added = storm["streaming_added_p99_ms"]
        lines.append(
            f"| {step.target} | {step.streaming} + {storm['requested']} | {storm['opened']} "
            f"| {storm['seconds']:.2f} | {storm['admissions_per_second']:.0f} "
            f"| {setup['p50']:.1f} / {setup['p99']:.1f} / {setup['max']:.1f} "
            f"| {before['p99']:.1f} → {during['p99']:.1f} "
            f"| {'-' if added is None else f'{added:+.1f}'} "
            f"| {number(step.proxy_cpu_ms_per_admission, 2)} "
            f"| {number(step.admissions_per_cpu_second, 0)} "
            f"| {number(step.proxy_rss_kb_per_session)} | {step.load_core_busy_percent:.0f} "
            f"| {step.errors} |"
        )
    return "\n".join(lines) + "\n"
