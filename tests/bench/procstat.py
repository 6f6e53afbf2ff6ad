"""CPU time and resident memory of a process tree, and how busy each core is, from /proc.

A proxy may be one process (uvicorn, one worker) or several (uvicorn workers, nginx master
and worker): the tree under the launched pid is summed. Core busy time shows when the load
core (generator + emulator) saturates, which would make the run measure them, not the proxy.
Samples carry Unix time so they can be cut to the load generator's measurement window.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    at: float  # Unix time
    cpu_seconds: float  # user + system, summed over the tree
    rss_bytes: int
    core_busy_seconds: dict[int, float]
    core_total_seconds: dict[int, float]


@dataclass(frozen=True)
class Usage:
    """What a process tree used over a window."""

    cpu_seconds: float
    wall_seconds: float
    peak_rss_bytes: int
    core_busy_percent: dict[int, float]

    @property
    def cpu_percent(self) -> float:
        """Percent of one core."""
        return 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def sample(pids: list[int], cores: tuple[int, ...]) -> Sample:
    cpu_ticks, rss_pages = 0, 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue  # exited between listing and reading
        cpu_ticks += int(fields[11]) + int(fields[12])  # utime, stime
        rss_pages += int(fields[21])
    busy, total = _core_times(cores)
    return Sample(time.time(), cpu_ticks / CLOCK_TICKS, rss_pages * PAGE_BYTES, busy, total)


def _core_times(cores: tuple[int, ...]) -> tuple[dict[int, float], dict[int, float]]:
    """Busy and total seconds of each core since boot (/proc/stat `cpuN` lines)."""
    busy, total = {}, {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, values = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
            continue
        ticks = [int(value) for value in values.split()]
        idle = ticks[3] + ticks[4]  # idle, iowait
        core = int(name[3:])
        busy[core] = (sum(ticks[:8]) - idle) / CLOCK_TICKS  # guest time is already in user
        total[core] = sum(ticks[:8]) / CLOCK_TICKS
    return busy, total


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces): state is [0]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


class Sampler:
    """Samples a process tree (if any) and some cores every `interval` seconds in a thread."""

    def __init__(self, pid: int | None, cores: tuple[int, ...], interval: float = 0.25) -> None:
        self._pid = pid
        self._cores = cores
        self._interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.samples.append(sample(self._pids(), self._cores))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _pids(self) -> list[int]:
        return [] if self._pid is None else tree(self._pid)

    def _run(self) -> None:
        pids = self._pids()  # the tree is complete once the proxy has served its warm-up
        while not self._stop.wait(self._interval):
            self.samples.append(sample(pids, self._cores))

    def usage_around(self, start: float, end: float) -> Usage:
        """Usage between the last sample at or before `start` and the first at or after `end`:
        for spans (a storm) that may be shorter than a few sampling intervals."""
        before = [s for s in self.samples if s.at <= start]
        after = [s for s in self.samples if s.at >= end]
        if not before or not after:
            raise ValueError("the span is not bracketed by samples: sample longer")
        return self.usage(before[-1].at, after[0].at)

    def usage(self, start: float, end: float) -> Usage:
        """CPU between the first and last samples inside [start, end], peak RSS within."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            raise ValueError("fewer than two samples inside the window: sample more often")
        first, last = inside[0], inside[-1]
        core_busy = {
            core: 100
            * (last.core_busy_seconds[core] - first.core_busy_seconds[core])
            / max(1e-9, last.core_total_seconds[core] - first.core_total_seconds[core])
            for core in self._cores
        }
        return Usage(
            cpu_seconds=last.cpu_seconds - first.cpu_seconds,
            wall_seconds=last.at - first.at,
            peak_rss_bytes=max(s.rss_bytes for s in inside),
            core_busy_percent=core_busy,
        )
