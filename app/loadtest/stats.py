"""Summaries of timing samples: count, percentiles and extremes, in pure Python."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Summary:
    """A distribution of durations in milliseconds (all zero when there is no sample)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending list: the smallest value with `fraction` at or
    below it, so p99 of 100 samples is the 99th, never an interpolated value nobody observed."""
    if not ordered:
        raise ValueError("percentile of no samples")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize_ns(samples: Iterable[int]) -> Summary:
    """Summarise nanosecond durations in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def ms(value: float) -> float:
        return round(value / NS_PER_MS, 3)

    return Summary(
        count=len(ordered),
        mean=ms(sum(ordered) / len(ordered)),
        p50=ms(percentile(ordered, 0.50)),
        p90=ms(percentile(ordered, 0.90)),
        p99=ms(percentile(ordered, 0.99)),
        max=ms(ordered[-1]),
    )
