"""Each configured project's quota usage against its limits, as Prometheus gauges.

Ops alert on a project nearing its caps before its clients get refused: the gauges carry the
sessions held and the tokens in the window as the store counts them (every replica's share),
next to the limits in force. Each process refreshes them every few seconds with two store reads
per project; projects are bounded by the configuration, so the label sets are too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from app.metrics import RelayMetrics
from app.quota.types import QuotaLimits, QuotaStore, QuotaStoreError

logger = logging.getLogger(__name__)

MAX_REFRESH_SECONDS = 5.0
"""Refresh at least this often (and as often as the quota heartbeat when it beats faster)."""

ProjectLimits = Callable[[], Mapping[str, QuotaLimits]]
"""The projects in force and their limits, read at every refresh (the file may be reloaded)."""


async def refresh_quota_usage(
    store: QuotaStore, projects: Mapping[str, QuotaLimits], metrics: RelayMetrics
) -> None:
    """Set the gauges of every project from the store; drop those of removed projects.
    Raises QuotaStoreError when the store does not answer (the gauges keep their values)."""
    for name, limits in projects.items():
        held = await store.held(name)
        window = await store.window(name, limits)
        metrics.quota_sessions_held.labels(name).set(held)
        metrics.quota_sessions_limit.labels(name).set(limits.max_sessions)
        metrics.quota_window_tokens.labels(name).set(window.used)
        metrics.quota_tokens_per_minute_limit.labels(name).set(limits.tokens_per_minute)
    for gauge in (
        metrics.quota_sessions_held,
        metrics.quota_sessions_limit,
        metrics.quota_window_tokens,
        metrics.quota_tokens_per_minute_limit,
    ):
        for (name,) in _label_sets(gauge):
            if name not in projects:
                gauge.remove(name)


async def _refresh_forever(
    store: QuotaStore, projects: ProjectLimits, metrics: RelayMetrics, seconds: float
) -> None:
    while True:
        try:
            await refresh_quota_usage(store, projects(), metrics)
        except QuotaStoreError as exc:
            logger.debug("quota usage gauges not refreshed: %s", exc)
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def exporting_quota_usage(
    store: QuotaStore, projects: ProjectLimits, metrics: RelayMetrics, lease_ttl: float
) -> AsyncIterator[None]:
    """Refresh the usage gauges in the background while the context is open."""
    seconds = min(MAX_REFRESH_SECONDS, lease_ttl / 3)
    task = asyncio.create_task(
        _refresh_forever(store, projects, metrics, seconds), name="quota-usage-export"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _label_sets(gauge: object) -> list[tuple[str, ...]]:
    # prometheus_client keeps a metric's children in `_metrics`, keyed by label values; it has
    # no public way to list them.
    children: Mapping[tuple[str, ...], object] = getattr(gauge, "_metrics", {})
    return list(children)
