"""`Ledger`: one record per session that reached the upstream, beside the hot path.

The endpoint opens an account when the upstream connection is up, feeds it each usage report
(only frames carrying `usageMetadata` are parsed, as before), and closes it when the session
ends. Every `checkpoint_seconds` one task of the process submits a checkpoint of each open
account whose usage changed, so a replica killed mid-session loses at most that interval. The
final record has the highest version of its session (see record.py). Submitting never waits
(see writer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.ledger.metrics import LedgerMetrics
from app.ledger.prices import BUILT_IN, PriceTable
from app.ledger.record import SessionRecord
from app.ledger.usage import DETAILED_KINDS, KINDS, MODALITIES, UsageTotals, kind_column
from app.ledger.usage import modality_column as column_of
from app.ledger.writer import LedgerWriter


@dataclass(frozen=True, slots=True)
class SessionStart:
    session_id: str
    project: str
    user_id: str | None
    credential: str
    auth_method: str
    model: str
    started_at: float


def _no_switches() -> int:
    return 0


class SessionAccount:
    """One open session's usage so far."""

    __slots__ = ("_counted", "start", "switches", "usage", "version")

    def __init__(self, start: SessionStart) -> None:
        self.start = start
        self.usage = UsageTotals()
        self.version = 0
        self._counted = 0  # usage reports the last record carried
        # How many times the session switched upstream connections so far (resumption).
        self.switches: Callable[[], int] = _no_switches

    def record(
        self,
        *,
        final: bool,
        now: float,
        close_code: int | None = None,
        closed_by: str | None = None,
        outcome: str | None = None,
    ) -> SessionRecord:
        self.version += 1
        self._counted = self.usage.reports
        start = self.start
        return SessionRecord(
            session_id=start.session_id,
            version=self.version,
            final=final,
            project=start.project,
            user_id=start.user_id,
            credential=start.credential,
            auth_method=start.auth_method,
            model=start.model,
            started_at=start.started_at,
            ended_at=now if final else None,
            duration_seconds=max(now - start.started_at, 0.0),
            upstream_switches=self.switches(),
            close_code=close_code,
            closed_by=closed_by,
            outcome=outcome,
            usage_reports=self.usage.reports,
            tokens=self.usage.tokens if self.usage.reports else None,
            recorded_at=now,
        )

    @property
    def changed(self) -> bool:
        """Whether the session has no record yet, or usage came since the last one."""
        return self.version == 0 or self.usage.reports != self._counted


class Ledger:
    def __init__(
        self,
        writer: LedgerWriter | None,
        metrics: LedgerMetrics,
        checkpoint_seconds: float,
        prices: PriceTable = BUILT_IN,
    ) -> None:
        self.writer = writer  # None: no ledger configured; usage still reaches the metrics
        self.prices = prices
        self._metrics = metrics
        self._checkpoint_seconds = checkpoint_seconds
        self._open: set[SessionAccount] = set()
        self._task: asyncio.Task[None] | None = None

    def open(self, start: SessionStart) -> SessionAccount:
        account = SessionAccount(start)
        self._open.add(account)
        return account

    def add_usage(self, account: SessionAccount, report: Mapping[str, Any]) -> dict[str, int]:
        """Count one `usageMetadata` report of the session; return its token columns."""
        columns = account.usage.add(report)
        start = account.start
        counter = self._metrics.usage_tokens_total
        for kind in KINDS:
            count = columns[kind_column(kind)]
            if not count:
                continue
            attributed = 0
            if kind in DETAILED_KINDS:
                for modality in MODALITIES:
                    part = columns[column_of(kind, modality)]
                    if part:
                        counter.labels(start.project, start.model, kind, modality).inc(part)
                        attributed += part
            if count > attributed:
                counter.labels(start.project, start.model, kind, "unspecified").inc(
                    count - attributed
                )
        return columns

    def close(
        self, account: SessionAccount, *, close_code: int, closed_by: str, outcome: str
    ) -> None:
        """The session ended: submit its final record."""
        self._open.discard(account)
        record = account.record(
            final=True,
            now=time.time(),
            close_code=close_code,
            closed_by=closed_by,
            outcome=outcome,
        )
        if self.writer is not None:
            self.writer.submit(record)

    def checkpoint(self) -> int:
        """Submit a checkpoint of each open session whose usage changed; return how many."""
        if self.writer is None:
            return 0
        now = time.time()
        changed = [account for account in self._open if account.changed]
        for account in changed:
            self.writer.submit(account.record(final=False, now=now))
        return len(changed)

    def start(self) -> None:
        if self.writer is not None:
            self.writer.start()
            self._task = asyncio.create_task(self._checkpoints(), name="ledger-checkpoints")

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_seconds)
            self.checkpoint()

    async def aclose(self, deadline_seconds: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.writer is not None:
            await self.writer.aclose(deadline_seconds)
            await self.writer.store.aclose()
