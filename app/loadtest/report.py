"""The result of a run: a frozen value, printed as a table for people or JSON for machines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.loadtest.config import LoadConfig
from app.loadtest.recorder import Recorder
from app.loadtest.stats import Summary, summarize_ns


@dataclass(frozen=True)
class StormReport:
    """Sessions opened at once while the others stream: how fast they got in, what it cost.

    `streaming_before` covers the streaming sessions' frames sent in the window before the
    storm, `streaming_during` those sent from its first connect to its last setup; their p99
    difference is what the storm added to the sessions already talking.
    """

    requested: int
    opened: int
    failed: int
    seconds: float
    started_at: float | None  # Unix time, to line up with samples taken elsewhere
    ended_at: float | None
    connect: Summary
    setup: Summary
    streaming_before: Summary
    streaming_during: Summary

    @property
    def admissions_per_second(self) -> float:
        return round(self.opened / self.seconds, 1) if self.seconds > 0 else 0.0

    @property
    def added_p99_ms(self) -> float | None:
        if not self.streaming_before.count or not self.streaming_during.count:
            return None
        return round(self.streaming_during.p99 - self.streaming_before.p99, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "opened": self.opened,
            "failed": self.failed,
            "seconds": self.seconds,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "admissions_per_second": self.admissions_per_second,
            "connect_ms": self.connect.as_dict(),
            "setup_ms": self.setup.as_dict(),
            "streaming_before_ms": self.streaming_before.as_dict(),
            "streaming_during_ms": self.streaming_during.as_dict(),
            "streaming_added_p99_ms": self.added_p99_ms,
        }


@dataclass(frozen=True)
class LoadReport:
    """What one run measured. Rates and latencies cover the measurement window only."""

    target: str
    mode: str  # "audio" or "text"
    interval_ms: float
    sessions_requested: int
    sessions_opened: int
    window_seconds: float
    window_started_at: float | None  # Unix time, to line up with samples taken elsewhere
    window_ended_at: float | None
    offered_per_second: float
    sent_per_second: float
    answered_per_second: float
    frames_sent: int
    frames_answered: int
    frames_lost: int
    missed_slots: int
    blocked_sends: int
    other_frames: int
    latency: Summary
    connect: Summary
    setup: Summary
    errors: dict[str, int]
    close_codes: dict[int, int]
    storm: StormReport | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "interval_ms": self.interval_ms,
            "sessions": {"requested": self.sessions_requested, "opened": self.sessions_opened},
            "window": {
                "seconds": self.window_seconds,
                "started_at": self.window_started_at,
                "ended_at": self.window_ended_at,
            },
            "frames": {
                "offered_per_second": self.offered_per_second,
                "sent_per_second": self.sent_per_second,
                "answered_per_second": self.answered_per_second,
                "sent": self.frames_sent,
                "answered": self.frames_answered,
                "lost": self.frames_lost,
                "missed_slots": self.missed_slots,
                "blocked_sends": self.blocked_sends,
                "other": self.other_frames,
            },
            "latency_ms": self.latency.as_dict(),
            "connect_ms": self.connect.as_dict(),
            "setup_ms": self.setup.as_dict(),
            "errors": {"total": self.error_count, "by_kind": dict(self.errors)},
            "close_codes": {str(code): count for code, count in sorted(self.close_codes.items())},
            "storm": None if self.storm is None else self.storm.as_dict(),
        }


def build_report(config: LoadConfig, recorder: Recorder) -> LoadReport:
    window = recorder.window_seconds

    def per_second(count: int) -> float:
        return round(count / window, 1) if window > 0 else 0.0

    return LoadReport(
        target=_without_secrets(config.url),
        mode="text" if config.text_only else "audio",
        interval_ms=config.interval_seconds * 1000,
        sessions_requested=config.sessions,
        sessions_opened=recorder.opened,
        window_seconds=round(window, 3),
        window_started_at=recorder.window_start_unix,
        window_ended_at=recorder.window_end_unix,
        offered_per_second=round(config.sessions / config.interval_seconds, 1),
        sent_per_second=per_second(recorder.window_sent),
        answered_per_second=per_second(recorder.window_answered),
        frames_sent=recorder.window_sent,
        frames_answered=recorder.window_answered,
        frames_lost=recorder.lost,
        missed_slots=recorder.missed_slots,
        blocked_sends=recorder.blocked_sends,
        other_frames=recorder.other_frames,
        latency=summarize_ns(recorder.latencies_ns),
        connect=summarize_ns(recorder.connect_ns),
        setup=summarize_ns(recorder.setup_ns),
        errors=dict(recorder.errors),
        close_codes=dict(recorder.close_codes),
        storm=_storm_report(recorder) if config.storm_sessions else None,
    )


def _storm_report(recorder: Recorder) -> StormReport:
    storm = recorder.storm
    start, end = storm.started_ns, storm.ended_ns
    window_start = recorder.window_start_ns
    before = during = summarize_ns([])
    if start is not None and window_start is not None:
        before = summarize_ns(recorder.latencies_sent_between(window_start, start))
        if end is not None:
            during = summarize_ns(recorder.latencies_sent_between(start, end))
    return StormReport(
        requested=storm.sessions,
        opened=storm.opened,
        failed=storm.failed,
        seconds=round(storm.seconds, 3),
        started_at=storm.started_unix,
        ended_at=storm.ended_unix,
        connect=summarize_ns(storm.connect_ns),
        setup=summarize_ns(storm.setup_ns),
        streaming_before=before,
        streaming_during=during,
    )


def _without_secrets(url: str) -> str:
    """The URL without its query or user info, which may carry a credential."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def render_table(report: LoadReport) -> str:
    """A human-readable summary of a report."""
    what = (
        f"text turns every {report.interval_ms / 1000:g} s"
        if report.mode == "text"
        else f"{report.interval_ms:g} ms audio chunks"
    )
    lines = [
        f"{report.sessions_requested} sessions x {what} -> {report.target}",
        f"measured for {report.window_seconds:.1f} s after "
        f"{report.sessions_opened}/{report.sessions_requested} sessions opened",
        "",
        f"{'frames/s':<16}{'offered':>10}{'sent':>10}{'answered':>10}",
        f"{'':<16}{report.offered_per_second:>10.1f}{report.sent_per_second:>10.1f}"
        f"{report.answered_per_second:>10.1f}",
        f"lost {report.frames_lost}, sends skipped: {report.missed_slots} generator late, "
        f"{report.blocked_sends} endpoint not reading; other frames {report.other_frames}",
        "",
        f"{'ms':<16}{'count':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
        _summary_row("round trip", report.latency),
        _summary_row("connect", report.connect),
        _summary_row("setup", report.setup),
        "",
        "close codes: "
        + (", ".join(f"{code} x{n}" for code, n in sorted(report.close_codes.items())) or "none"),
        f"errors: {report.error_count}",
    ]
    lines += [f"  {count:>6} x {kind}" for kind, count in sorted(report.errors.items())]
    if report.storm is not None:
        lines += ["", *_storm_lines(report.storm)]
    return "\n".join(lines)


def _storm_lines(storm: StormReport) -> list[str]:
    added = "-" if storm.added_p99_ms is None else f"{storm.added_p99_ms:+.2f} ms"
    return [
        f"storm: {storm.opened}/{storm.requested} sessions opened at once in "
        f"{storm.seconds:.2f} s ({storm.admissions_per_second:.0f} admissions/s), "
        f"{storm.failed} failed",
        f"{'ms':<16}{'count':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
        _summary_row("storm connect", storm.connect),
        _summary_row("storm setup", storm.setup),
        _summary_row("rtt before", storm.streaming_before),
        _summary_row("rtt during", storm.streaming_during),
        f"streaming sessions' added p99 during the storm: {added}",
    ]


def _summary_row(label: str, summary: Summary) -> str:
    return (
        f"{label:<16}{summary.count:>8}{summary.p50:>9.2f}{summary.p90:>9.2f}"
        f"{summary.p99:>9.2f}{summary.max:>9.2f}"
    )
