"""The quota policy of one relay process around a store: admit, release, charge, heartbeat.

A store only answers or raises. The keeper decides what an unreachable store means: new
sessions are refused (or admitted, with `RELAY_QUOTA_FAIL_OPEN`), running sessions go on, and
whatever could not be written (releases, token charges, leases of sessions admitted while the
store was away) is written when it answers again. Its heartbeat renews the leases of this
process every `lease_ttl/3` seconds, so a lease outlives two missed beats and a dead process
frees its slots within one TTL.

Store calls that change something run in tasks the caller's cancellation cannot interrupt: a
session cancelled while its lease is being recorded must not leave the slot taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.quota.refusals import STORE_UNAVAILABLE
from app.quota.types import Lease, QuotaLimits, QuotaStore, QuotaStoreError, Refusal
from app.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class QuotaKeeper:
    """One per process. Nothing here is meant to be called per frame: `charge` once per
    `usageMetadata` message, the rest once per session."""

    def __init__(self, store: QuotaStore, settings: Settings) -> None:
        self._store = store
        self._lease_ttl = settings.lease_ttl_seconds
        self._fail_open = settings.quota_fail_open
        self._live: dict[str, Lease] = {}
        """Leases of this process's running sessions, by session id: what the heartbeat renews."""
        self._unreleased: dict[str, Lease] = {}
        self._uncharged: dict[str, tuple[int, QuotaLimits]] = {}
        """project -> tokens not yet charged, and the project's latest limits."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self.store_healthy = True
        """False from a failed store call until the next one that succeeds (for /readyz)."""
        self.fail_open_admissions = 0
        """Sessions admitted without a quota check because the store was unreachable."""

    async def start(self) -> None:
        """Check the store once (never raises) and start the heartbeat."""
        await self._beat()
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="quota-heartbeat")

    async def aclose(self) -> None:
        """Stop the heartbeat and try once, for at most a beat, to release the leases still
        held and write what is pending; whatever fails then expires within one lease TTL.
        Call it after the sessions ended; the store stays open (its opener closes it)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._unreleased.update(self._live)
        self._live.clear()
        try:
            async with asyncio.timeout(self._lease_ttl / 3):
                await self._write_pending()
        except (QuotaStoreError, TimeoutError) as exc:
            logger.warning("quota keeper closed with writes pending: %s", exc)

    @property
    def live_leases(self) -> list[Lease]:
        """Leases this process holds (sessions running here)."""
        return list(self._live.values())

    async def admit(self, lease: Lease, limits: QuotaLimits) -> Refusal | None:
        """Take a session slot for `lease`: None when admitted, else why not (close 1013)."""
        acquiring = self._spawn(self._store.acquire(lease, limits, self._lease_ttl))
        try:
            refusal = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            acquiring.add_done_callback(lambda _: self._undo_admission(lease, acquiring))
            raise
        except QuotaStoreError as exc:
            self._lost_store(exc)
            if not self._fail_open:
                # Had the script run before its answer was lost, nobody renews that lease: it
                # expires within one TTL.
                return STORE_UNAVAILABLE
            self.fail_open_admissions += 1
            logger.warning(
                "quota store unreachable: admitting a session of project %r unchecked "
                "(RELAY_QUOTA_FAIL_OPEN)",
                lease.project,
            )
            self._live[lease.session_id] = lease  # recorded by the first heartbeat that succeeds
            return None
        self._found_store()
        if refusal is None:
            self._live[lease.session_id] = lease
        return refusal

    async def release(self, lease: Lease) -> None:
        """Free the session's slot. Never raises: an unreachable store gets the release later."""
        self._live.pop(lease.session_id, None)
        await asyncio.shield(self._spawn(self._release_or_remember(lease)))

    async def charge(self, project: str, tokens: int, limits: QuotaLimits) -> bool:
        """Count tokens the upstream reported; True when the project is now over its budget.

        Never raises: while the store is unreachable the tokens are kept and charged when it
        answers again, and the answer is False (an outage does not end running sessions).
        """
        return await asyncio.shield(self._spawn(self._charge_or_keep(project, tokens, limits)))

    async def _release_or_remember(self, lease: Lease) -> None:
        try:
            await self._store.release(lease)
        except QuotaStoreError as exc:
            self._lost_store(exc)
            self._unreleased[lease.session_id] = lease
        else:
            self._found_store()

    async def _charge_or_keep(self, project: str, tokens: int, limits: QuotaLimits) -> bool:
        try:
            window = await self._store.charge(project, tokens, limits)
        except QuotaStoreError as exc:
            self._lost_store(exc)
            self._keep_uncharged(project, tokens, limits)
            return False
        self._found_store()
        return window.spent

    def _keep_uncharged(self, project: str, tokens: int, limits: QuotaLimits) -> None:
        kept, _ = self._uncharged.get(project, (0, limits))
        self._uncharged[project] = (kept + tokens, limits)

    def _undo_admission(self, lease: Lease, acquiring: asyncio.Task[Refusal | None]) -> None:
        """`admit` was cancelled while the store was recording the lease: unless the store
        refused, the slot may be taken, and no session will ever release it."""
        if acquiring.cancelled() or acquiring.exception() is not None or acquiring.result() is None:
            self._spawn(self._release_or_remember(lease))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            await self._beat()

    async def _beat(self) -> None:
        leases = list(self._live.values())
        try:
            if leases:
                recreated = await self._store.renew(leases, self._lease_ttl)
                if recreated:
                    logger.warning(
                        "quota store had lost %d leases of this relay: restored", recreated
                    )
            else:
                await self._store.ping()
        except QuotaStoreError as exc:
            self._lost_store(exc)
            return
        finally:
            # A session released while its lease was being renewed may have been re-created by
            # the renewal: release it again.
            for lease in leases:
                if lease.session_id not in self._live:
                    self._unreleased[lease.session_id] = lease
        self._found_store()
        try:
            await self._write_pending()
        except QuotaStoreError as exc:
            self._lost_store(exc)

    async def _write_pending(self) -> None:
        """Releases and charges that failed while the store was unreachable, oldest first."""
        for session_id, lease in list(self._unreleased.items()):
            await self._store.release(lease)
            if self._unreleased.get(session_id) is lease:
                del self._unreleased[session_id]
        for project, (tokens, limits) in list(self._uncharged.items()):
            del self._uncharged[project]
            try:
                await self._store.charge(project, tokens, limits)
            except QuotaStoreError:
                self._keep_uncharged(project, tokens, limits)
                raise

    def _lost_store(self, exc: QuotaStoreError) -> None:
        if self.store_healthy:
            logger.warning("quota store unreachable: %s", exc)
        self.store_healthy = False

    def _found_store(self) -> None:
        if not self.store_healthy:
            logger.info("quota store reachable again")
        self.store_healthy = True

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` to its end even if whoever awaits it is cancelled."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
