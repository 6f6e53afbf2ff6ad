"""The batch writer: records leave sessions through a bounded queue, without waiting.

`submit` never blocks and never awaits: a session hands its record over and goes on. One task
drains the queue in batches of up to `batch_size` (whatever is waiting, so a quiet relay writes
each record at once and a busy one amortises a transaction over many). A batch the database
does not take goes to the spool (spool.py); while the spool holds records, the writer tries the
database again every `retry_seconds` and replays the spool once it answers.

Bounds: the queue holds `queue_size` records. When it is full a checkpoint is dropped (counted:
a later checkpoint or the final record of its session carries the same usage and more); a final
record is never dropped but waits in a list of its own, one per ended session, until the writer
takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from app.ledger.metrics import LedgerMetrics
from app.ledger.record import SessionRecord
from app.ledger.spool import Spool
from app.ledger.store import LedgerStore, LedgerStoreError

logger = logging.getLogger(__name__)


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        spool: Spool,
        metrics: LedgerMetrics,
        *,
        queue_size: int,
        batch_size: int,
        retry_seconds: float,
    ) -> None:
        self.store = store
        self._spool = spool
        self._metrics = metrics
        self._queue: asyncio.Queue[SessionRecord] = asyncio.Queue(queue_size)
        self._overflow: list[SessionRecord] = []  # final records that found the queue full
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._migrated = False
        self._healthy = True  # the last write reached the database
        self._retry_at = 0.0  # while not healthy: when to try the database again
        self._orphans_checked = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- the sessions' side ------------------------------------------------------------------

    def submit(self, record: SessionRecord) -> None:
        """Hand `record` to the writer; returns at once."""
        if self._closed:
            # The writer is gone (shutdown): keep the record on disk for the next start.
            self._spool_now([record])
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            if record.final:
                self._overflow.append(record)
            else:
                self._metrics.records_lost_total.labels("superseded").inc()
        self._metrics.backlog.set(self.backlog)

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + len(self._overflow) + self._spool.pending

    @property
    def healthy(self) -> bool:
        """Whether the last write reached the database."""
        return self._healthy

    # --- the writer's task ---------------------------------------------------------------------

    async def prepare(self) -> None:
        """Apply the store's migrations now (LedgerStoreError: the database is away; the
        writer applies them before its first write instead)."""
        await self.store.migrate()
        self._migrated = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        if not self._migrated:
            try:
                await self.prepare()
            except LedgerStoreError as exc:
                logger.warning("ledger database unreachable at start-up, spooling: %s", exc)
                self._healthy = False
                self._retry_at = time.monotonic() + self._retry_seconds
        while True:
            try:
                await self._step()
            except Exception:
                # The writer must outlive a bug in one step: records keep their way to the
                # database or the spool. (LedgerStoreError and OSError are handled inside.)
                logger.exception("ledger writer step failed")
                await asyncio.sleep(self._retry_seconds)

    async def _step(self) -> None:
        batch = await self._next_batch()
        if batch:
            await self._write(batch)
        spooled = self._spool.pending > 0 or not self._orphans_checked
        if spooled and self._may_try():
            await self._replay()
        self._metrics.backlog.set(self.backlog)

    def _may_try(self) -> bool:
        """Whether to send the database anything: it answered last time, or it failed over
        `retry_seconds` ago (meanwhile records go to the spool without waiting on it)."""
        return self._healthy or time.monotonic() >= self._retry_at

    async def _next_batch(self) -> list[SessionRecord]:
        batch, self._overflow = (
            self._overflow[: self._batch_size],
            self._overflow[self._batch_size :],
        )
        if not batch:
            # With records spooled, wake up to retry the database even when nothing new comes.
            waiting = self._spool.pending > 0 or not self._orphans_checked
            try:
                async with asyncio.timeout(self._retry_seconds if waiting else None):
                    batch.append(await self._queue.get())
            except TimeoutError:
                return []
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[SessionRecord]) -> None:
        if self._may_try() and await self._to_database(_latest_versions(batch)):
            return
        await asyncio.to_thread(self._spool_now, batch)

    async def _to_database(self, records: Sequence[SessionRecord]) -> bool:
        started = time.perf_counter()
        try:
            if not self._migrated:
                await self.store.migrate()
                self._migrated = True
            await self.store.write(records)
        except LedgerStoreError as exc:
            if self._healthy:
                logger.warning("ledger database unreachable, spooling records: %s", exc)
            self._healthy = False
            self._retry_at = time.monotonic() + self._retry_seconds
            return False
        finally:
            self._metrics.write_seconds.observe(time.perf_counter() - started)
        if not self._healthy:
            logger.info("ledger database reachable again")
        self._healthy = True
        self._metrics.records_written_total.inc(len(records))
        return True

    async def _replay(self) -> None:
        """Write the spooled records (this process's, then those of processes that are gone)."""
        own = await asyncio.to_thread(self._spool.read_own)
        for chunk in _chunks(_latest_versions(own), self._batch_size):
            if not await self._to_database(chunk):
                return
        if own:
            logger.info("ledger: %d spooled records replayed", len(own))
        await asyncio.to_thread(self._spool.clear_own)
        orphans = self._spool.orphans()
        try:
            while True:
                found = await asyncio.to_thread(next, orphans, None)
                if found is None:
                    break
                path, records = found
                for chunk in _chunks(_latest_versions(records), self._batch_size):
                    if not await self._to_database(chunk):
                        return
                logger.info("ledger: %d records replayed from %s", len(records), path)
                path.unlink()
        finally:
            await asyncio.to_thread(orphans.close)
        self._orphans_checked = True

    def _spool_now(self, records: list[SessionRecord]) -> None:
        try:
            dropped = self._spool.append(records)
        except OSError:
            logger.exception("ledger: %d records could not be spooled: lost", len(records))
            self._metrics.records_lost_total.labels("spool_unwritable").inc(len(records))
            return
        self._metrics.records_spooled_total.inc(len(records) - dropped)
        if dropped:
            logger.error("ledger spool is full: %d records lost", dropped)
            self._metrics.records_lost_total.labels("spool_full").inc(dropped)

    async def aclose(self, deadline_seconds: float) -> None:
        """Stop the writer; write what it holds (to the spool if the database does not take it
        within `deadline_seconds`); later submissions go straight to the spool."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed = True
        left = self._overflow
        self._overflow = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            written = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_seconds):
                    written = await self._to_database(_latest_versions(left))
            if not written:
                self._spool_now(left)
        self._metrics.backlog.set(self.backlog)
        self._spool.close()


def _latest_versions(records: Sequence[SessionRecord]) -> list[SessionRecord]:
    """One record per session, its highest version: a batch never upserts one row twice."""
    latest: dict[str, SessionRecord] = {}
    for record in records:
        held = latest.get(record.session_id)
        if held is None or record.version > held.version:
            latest[record.session_id] = record
    return list(latest.values())


def _chunks(records: list[SessionRecord], size: int) -> list[list[SessionRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]
