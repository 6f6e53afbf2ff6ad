"""One measured step (a target at a session count), and the Markdown table of a whole run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.bench.machine import Machine


def errors_and_lost(report: dict[str, Any]) -> int:
    """What a loadtest --json report counts as failed: errors plus frames lost."""
    return int(report["errors"]["total"]) + int(report["frames"]["lost"])


@dataclass(frozen=True)
class Step:
    """A target at a session count, as loadtest and the /proc sampler saw it."""

    target: str
    sessions: int
    report: dict[str, Any]  # loadtest --json
    proxy_cpu_percent: float | None
    proxy_cpu_us_per_frame: float | None
    proxy_rss_kb_per_session: float | None
    load_core_busy_percent: float
    proxy_core_busy_percent: float

    @property
    def p50(self) -> float:
        return float(self.report["latency_ms"]["p50"])

    @property
    def p99(self) -> float:
        return float(self.report["latency_ms"]["p99"])

    @property
    def errors(self) -> int:
        return errors_and_lost(self.report)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sessions": self.sessions,
            "proxy_cpu_percent": self.proxy_cpu_percent,
            "proxy_cpu_us_per_frame": self.proxy_cpu_us_per_frame,
            "proxy_rss_kb_per_session": self.proxy_rss_kb_per_session,
            "load_core_busy_percent": self.load_core_busy_percent,
            "proxy_core_busy_percent": self.proxy_core_busy_percent,
            "loadtest": self.report,
        }


@dataclass(frozen=True)
class Target:
    """A requirement of issue 7 on the relay, checked against a run."""

    sessions: int
    max_added_p50_ms: float | None
    max_added_p99_ms: float | None


TARGETS = (Target(200, 0.5, 3.0), Target(300, None, 5.0), Target(400, None, None))
MAX_CPU_RATIO_TO_BARE = 1.2
MAX_RSS_KB_PER_SESSION = 100.0


def number(value: float | None, digits: int = 1) -> str:
    """A table cell: `-` for no figure."""
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def markdown(steps: list[Step], machine: Machine, settings: list[str]) -> str:
    baseline = {step.sessions: step for step in steps if step.target == "direct"}
    lines = [
        "# live-relay benchmark",
        "",
        *machine.describe(),
        *settings,
        "",
        "| sessions | target | frames/s offered → answered | p50 ms | p99 ms | added p50 | "
        "added p99 | setup p50 / p99 ms | proxy CPU % of a core | CPU µs / frame | "
        "RSS KB / session | load core busy % | errors + lost |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        frames, setup = step.report["frames"], step.report["setup_ms"]
        base = baseline.get(step.sessions)
        added_p50 = None if base is None or step is base else step.p50 - base.p50
        added_p99 = None if base is None or step is base else step.p99 - base.p99
        lines.append(
            f"| {step.sessions} | {step.target} "
            f"| {frames['offered_per_second']:.0f} → {frames['answered_per_second']:.0f} "
            f"| {step.p50:.2f} | {step.p99:.2f} | {_signed(added_p50)} | {_signed(added_p99)} "
            f"| {setup['p50']:.1f} / {setup['p99']:.1f} "
            f"| {number(step.proxy_cpu_percent)} | {number(step.proxy_cpu_us_per_frame)} "
            f"| {number(step.proxy_rss_kb_per_session)} | {step.load_core_busy_percent:.0f} "
            f"| {step.errors} |"
        )
    checks = verdicts(steps)
    if checks:
        lines += ["", "## Targets (relay, one worker)", "", *checks]
    return "\n".join(lines) + "\n"


def verdicts(steps: list[Step]) -> list[str]:
    """Issue 7's targets for the relay, each met or not, with the figure that decides."""
    by_key = {(step.target, step.sessions): step for step in steps}
    lines = []
    for target in TARGETS:
        relay, base = (
            by_key.get(("relay", target.sessions)),
            by_key.get(("direct", target.sessions)),
        )
        if relay is None or base is None:
            continue
        added_p50, added_p99 = relay.p50 - base.p50, relay.p99 - base.p99
        checks = [(relay.errors == 0, f"errors + lost {relay.errors}")]
        if target.max_added_p50_ms is not None:
            checks.append(
                (
                    added_p50 <= target.max_added_p50_ms,
                    f"added p50 {added_p50:+.2f} ms (≤ {target.max_added_p50_ms})",
                )
            )
        if target.max_added_p99_ms is not None:
            checks.append(
                (
                    added_p99 <= target.max_added_p99_ms,
                    f"added p99 {added_p99:+.2f} ms (≤ {target.max_added_p99_ms})",
                )
            )
        else:
            checks.append((True, f"added p99 {added_p99:+.2f} ms (reported)"))
        lines.append(f"- {target.sessions} sessions: " + "; ".join(_mark(*c) for c in checks))
    for sessions in sorted({step.sessions for step in steps}):
        relay, bare = by_key.get(("relay", sessions)), by_key.get(("bare", sessions))
        if relay is None or bare is None or sessions < 50:
            continue
        if relay.proxy_cpu_us_per_frame and bare.proxy_cpu_us_per_frame:
            ratio = relay.proxy_cpu_us_per_frame / bare.proxy_cpu_us_per_frame
            lines.append(
                f"- {sessions} sessions: "
                + _mark(
                    ratio <= MAX_CPU_RATIO_TO_BARE,
                    f"CPU per frame {ratio:.2f}x bare (≤ {MAX_CPU_RATIO_TO_BARE}x)",
                )
            )
    for step in steps:
        rss = step.proxy_rss_kb_per_session
        if step.target == "relay" and step.sessions >= 50 and rss is not None:
            ok = rss <= MAX_RSS_KB_PER_SESSION
            text = f"RSS per session {rss:.0f} KB (≤ {MAX_RSS_KB_PER_SESSION:.0f})"
            lines.append(f"- {step.sessions} sessions: {_mark(ok, text)}")
    return lines


def _mark(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'}: {text}"
