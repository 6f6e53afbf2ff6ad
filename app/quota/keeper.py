"""The quota policy of one relay process around a store: admit, release, charge, heartbeat.

A store only answers or raises. The keeper decides what an unreachable store means: new
sessions are refused (or admitted, with `RELAY_QUOTA_FAIL_OPEN`), running sessions go on, and
whatever could not be written (releases, token charges, leases of sessions admitted while the
store was away) is written when it answers again. Its heartbeat renews the leases of this
process every `lease_ttl/3` seconds, so a lease outlives two missed beats and a dead process
frees its slots within one TTL.

Exact under stalls: an admission the keeper gave up on (the store did not answer in time, or
the session was cancelled) is released, and the release retried every `RETRY_SECONDS` until the
store answers. A release leaves a mark that makes a late `acquire` of the same session refuse,
so whichever of the two a stalled Redis runs first, no slot stays taken: the live count is
exact again as soon as the store answers (see docs/quota-guarantees.md).

Never over the cap: a lease the store lost while its session ran (Redis restarted empty, or
this process was frozen past the TTL) is taken back by the heartbeat only if the project has
room, and its user too under a per-user cap; the sessions left out, newest first, are handed
to `on_slot_lost`, which ends them.

Never refused for a phantom: the admission that starts while a client's setup is on its way
(`admit_in_background`) takes a provisional lease, which lapses after `PROVISIONAL_SECONDS`
unless `confirm` makes it a session's once the setup is accepted. Sockets that never send a
valid setup thus hold a slot for moments only, and a valid setup refused while such leases
help fill the cap (the store says how many, and when the first lapses), or while this
process still gives back slots of sessions that ended, waits for them to settle and tries once
more before it is refused. Its refusal then counts sessions, not sockets.

Releases and charges run in tasks the caller's cancellation cannot interrupt: a session
cancelled while its slot is being given back must not leave it taken. An admission is not
cancelled: `admit_in_background` runs it in a task, and a caller that stops waiting calls
`abandon`, which gives the slot back once the store has answered (at shutdown, when sessions
are cancelled mid-admission, `aclose` releases every lease still held). (Measured: cancelling the
admissions of clients that left took slots nothing released, 2-5 in 1,000 random
connect-and-abort cycles: a command cut off inside the Redis client can still take its slot.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from app.quota.refusals import STORE_UNAVAILABLE
from app.quota.types import (
    Lease,
    LostSlot,
    QuotaLimits,
    QuotaStore,
    QuotaStoreError,
    Refusal,
    Renewal,
    TokenWindow,
)
from app.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = 0.2
"""Pause between two attempts to write what an unreachable store missed (releases, charges):
the count is exact again at most this long after the store answers."""

WARM_UP_SECONDS = 3.0
"""At most this long at start-up opening connections to the store: an unreachable store
(down, or a host that drops packets) delays the start by this, never more, and the relay
starts refusing (or, fail-open, admitting) as it would later in an outage."""

PROVISIONAL_SECONDS = 2.0
"""How long a provisional lease (a socket whose setup is on its way) holds its slot unless
confirmed. Setups normally arrive within a round trip; a slower client's setup is admitted
when it comes (see `confirm`)."""

MAX_PENDING_RELEASES = 10_000
"""Releases kept for an unreachable store. Past this (a long outage under a flood of refused
clients) the oldest are dropped: a lease nobody renews still expires within one TTL."""

Admission = asyncio.Task[Refusal | None]
"""An admission running in a task of its own: None when admitted, else why not."""

SlotLostHook = Callable[[LostSlot, QuotaLimits], None]
"""Called for each running session whose slot the store lost and could not take back."""


def _ignore_lost_slot(lost: LostSlot, limits: QuotaLimits) -> None:
    logger.warning("session %s lost its quota slot and nothing ends it", lost.lease.session_id)


class QuotaKeeper:
    """One per process. Nothing here is meant to be called per frame: `charge` once per
    `usageMetadata` message, the rest once per session."""

    def __init__(
        self,
        store: QuotaStore,
        settings: Settings,
        *,
        on_slot_lost: SlotLostHook = _ignore_lost_slot,
    ) -> None:
        self._store = store
        self._lease_ttl = settings.lease_ttl_seconds
        self._provisional_ttl = min(PROVISIONAL_SECONDS, settings.lease_ttl_seconds)
        self._fail_open = settings.quota_fail_open
        self._on_slot_lost = on_slot_lost
        self._live: dict[str, tuple[Lease, QuotaLimits]] = {}
        """Leases of this process's running sessions, by session id: what the heartbeat renews."""
        self._unreleased: dict[str, Lease] = {}
        """Releases the store has not confirmed: ended sessions and given-up admissions."""
        self._uncharged: dict[str, tuple[int, QuotaLimits]] = {}
        """project -> tokens not yet charged, and the project's latest limits."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.store_healthy = True
        """False from a failed store call until the next one that succeeds (for /readyz)."""
        self.fail_open_admissions = 0
        """Sessions admitted without a quota check because the store was unreachable."""
        self.slots_lost = 0
        """Running sessions ended because their slot was lost and the project was full."""

    async def start(self) -> None:
        """Open the store's connections and check it, for at most `WARM_UP_SECONDS` (never
        raises), then start the heartbeat. A replica that restarts meets its clients, all
        reconnecting at once, with connections already open."""
        try:
            async with asyncio.timeout(WARM_UP_SECONDS):
                await self._store.warm()
        except QuotaStoreError as exc:
            self._lost_store(exc)
        except TimeoutError:
            self._lost_store(QuotaStoreError(f"quota store: no answer in {WARM_UP_SECONDS} s"))
        else:
            self._found_store()
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="quota-heartbeat")

    async def aclose(self) -> None:
        """Stop the heartbeat and try once, for at most a beat, to release the leases still
        held and write what is pending; whatever fails then expires within one lease TTL.
        Call it after the sessions ended; the store stays open (its opener closes it)."""
        for task in (self._heartbeat, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._unreleased.update({sid: lease for sid, (lease, _) in self._live.items()})
        self._live.clear()
        try:
            async with asyncio.timeout(self._lease_ttl / 3):
                await self._write_pending()
        except (QuotaStoreError, TimeoutError) as exc:
            logger.warning("quota keeper closed with writes pending: %s", exc)

    @property
    def live_leases(self) -> list[Lease]:
        """Leases this process holds (sessions running here)."""
        return [lease for lease, _ in self._live.values()]

    @property
    def pending_writes(self) -> int:
        """Releases and project charges the store has not confirmed yet."""
        return len(self._unreleased) + len(self._uncharged)

    async def admit(
        self, lease: Lease, limits: QuotaLimits, *, provisional: bool = False
    ) -> Refusal | None:
        """Take a session slot for `lease`: None when admitted, else why not (close 1013).
        A `provisional` slot (the setup is on its way) lapses unless `confirm`ed."""
        ttl = self._provisional_ttl if provisional else self._lease_ttl
        try:
            # Awaited in the caller's task, not shielded in one of its own: a cancelled
            # admission is undone by the release below, and each task hop would cost the
            # session's set-up a whole pass of a busy event loop.
            refusal = await self._store.acquire(lease, limits, ttl, provisional=provisional)
        except asyncio.CancelledError:
            # Whatever the store does with the acquire, the release that follows undoes it.
            self._give_up(lease)
            raise
        except QuotaStoreError as exc:
            self._lost_store(exc)
            if not self._fail_open:
                # The acquire may still run (a stalled Redis runs it when it resumes): the
                # release, retried until the store answers, frees the slot either way.
                self._give_up(lease)
                return STORE_UNAVAILABLE
            self.fail_open_admissions += 1
            logger.warning(
                "quota store unreachable: admitting a session of project %r unchecked "
                "(RELAY_QUOTA_FAIL_OPEN)",
                lease.project,
            )
            # Recorded by the first heartbeat that succeeds, within the cap.
            self._live[lease.session_id] = (lease, limits)
            return None
        self._found_store()
        if refusal is None and not provisional:
            self._live[lease.session_id] = (lease, limits)
        return refusal

    def admit_in_background(self, lease: Lease, limits: QuotaLimits) -> Admission:
        """A provisional `admit` in a task of its own, for a caller still reading the setup:
        once the setup is accepted it calls `confirm`; if it stops waiting, `abandon` (it must
        not cancel the task)."""
        return asyncio.create_task(self.admit(lease, limits, provisional=True), name="admission")

    async def confirm(
        self, admission: Admission, lease: Lease, limits: QuotaLimits
    ) -> Refusal | None:
        """The slot of a session whose setup was accepted: `admission`'s, made the session's,
        or, refused while provisional leases or slots this process is giving back filled the
        cap, a second admission once they settled. None when admitted, else why not."""
        refusal = await admission
        if refusal is None:
            if lease.session_id in self._live:
                return None  # admitted while the store was away (fail-open): nothing to confirm
            if time.time() - lease.started_at > self._provisional_ttl / 2:
                # A slow setup: its provisional lease may have lapsed and its slot gone.
                return await self.admit(lease, limits)
            # In time: the lease is held. Made the session's off the set-up's path; should it
            # have lapsed meanwhile (a store stall), the renewal that follows decides.
            self._live[lease.session_id] = (lease, limits)
            self._spawn(self._confirm_in_store(lease, limits))
            return None
        if refusal.kind not in ("sessions", "user_sessions"):
            return refusal
        lapse = refusal.provisional_lapse_seconds
        if lapse is None and not self._releasing(lease.project):
            return refusal
        await self._settled(lease.project, lapse)
        return await self.admit(lease, limits)

    async def _confirm_in_store(self, lease: Lease, limits: QuotaLimits) -> None:
        try:
            refusal = await self._store.acquire(lease, limits, self._lease_ttl)
        except QuotaStoreError as exc:
            self._lost_store(exc)
            return  # the heartbeat renews it (or takes it back) once the store answers
        self._found_store()
        if refusal is not None and lease.session_id in self._live:
            # Its provisional lease lapsed before the confirmation and the cap filled up: the
            # renewal of a lost lease takes it back if there is room, else ends the session.
            try:
                renewal = await self._store.renew([lease], {lease.project: limits}, self._lease_ttl)
            except QuotaStoreError as exc:
                self._lost_store(exc)
                return
            self._end_over_cap(renewal, {lease.session_id: (lease, limits)})

    def _releasing(self, project: str) -> bool:
        """Whether this process is still giving back a slot of `project`."""
        return any(lease.project == project for lease in self._unreleased.values())

    async def _settled(self, project: str, lapse: float | None) -> None:
        """Wait (at most a provisional lease's life) until this process gave back the slots of
        `project` it was giving back, and the first provisional lease lapsed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._provisional_ttl
        lapsed_at = loop.time() + min(lapse or 0.0, self._provisional_ttl)
        # Polled: a rare path (a refusal), bounded, and releases are written by many tasks.
        while self._releasing(project) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(RETRY_SECONDS / 10)
        if (wait := lapsed_at - loop.time()) > 0:
            # A store clock tick later than the lapse itself, so the lease is surely gone.
            await asyncio.sleep(wait + 0.01)

    def abandon(self, admission: Admission, lease: Lease) -> None:
        """The caller no longer wants `admission`'s slot: give it back, now or once the store
        answers, if it was taken."""
        if admission.done():
            self._give_back_if_admitted(lease, admission)
        else:
            admission.add_done_callback(functools.partial(self._give_back_if_admitted, lease))

    def _give_back_if_admitted(self, lease: Lease, admission: Admission) -> None:
        if admission.cancelled() or admission.exception() is not None:
            return  # not admitted (a cancelled `admit` gave up its slot itself)
        if admission.result() is None:
            self._live.pop(lease.session_id, None)
            self._spawn(self._release_or_retry(lease))

    async def release(self, lease: Lease) -> None:
        """Free the session's slot. Never raises: an unreachable store gets the release later."""
        self._live.pop(lease.session_id, None)
        await asyncio.shield(self._spawn(self._release_or_retry(lease)))

    async def charge(self, project: str, tokens: int, limits: QuotaLimits) -> bool:
        """Count tokens the upstream reported; True when the project is now over its budget.

        Never raises: while the store is unreachable the tokens are kept and charged when it
        answers again, and the answer is False (an outage does not end running sessions).
        """
        window = await self.charge_session(project, None, tokens, limits)
        return window is not None and window.spent

    async def charge_session(
        self, project: str, session_id: str | None, tokens: int, limits: QuotaLimits
    ) -> TokenWindow | None:
        """`charge`, counted to `session_id`'s spend too: the window after the charge, whose
        `shed` says whether the session is to end (the "shed" policy), or None while the
        store is unreachable (the tokens are kept; nobody is ended for an outage)."""
        return await asyncio.shield(
            self._spawn(self._charge_or_keep(project, tokens, limits, session_id))
        )

    def _give_up(self, lease: Lease) -> None:
        self._spawn(self._release_or_retry(lease))

    async def _release_or_retry(self, lease: Lease) -> None:
        self._unreleased[lease.session_id] = lease
        if len(self._unreleased) > MAX_PENDING_RELEASES:
            del self._unreleased[next(iter(self._unreleased))]
        try:
            await self._store.release(lease, self._lease_ttl)
        except QuotaStoreError as exc:
            self._lost_store(exc)
            self._retry_writes()
            return
        self._found_store()
        if self._unreleased.get(lease.session_id) is lease:
            del self._unreleased[lease.session_id]

    async def _charge_or_keep(
        self, project: str, tokens: int, limits: QuotaLimits, session_id: str | None
    ) -> TokenWindow | None:
        try:
            window = await self._store.charge(project, tokens, limits, session_id=session_id)
        except QuotaStoreError as exc:
            self._lost_store(exc)
            self._keep_uncharged(project, tokens, limits)
            self._retry_writes()
            return None
        self._found_store()
        return window

    def _keep_uncharged(self, project: str, tokens: int, limits: QuotaLimits) -> None:
        kept, _ = self._uncharged.get(project, (0, limits))
        self._uncharged[project] = (kept + tokens, limits)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            await self._beat()

    async def _beat(self) -> None:
        live = dict(self._live)
        leases = [lease for lease, _ in live.values()]
        limits = {lease.project: limits for lease, limits in live.values()}
        renewal = Renewal(restored=0, over_cap=())
        try:
            if leases:
                renewal = await self._store.renew(leases, limits, self._lease_ttl)
            else:
                await self._store.ping()
        except QuotaStoreError as exc:
            self._lost_store(exc)
            return
        self._found_store()
        if renewal.restored:
            logger.warning(
                "quota store had lost %d leases of this relay: restored", renewal.restored
            )
        self._end_over_cap(renewal, live)
        self._retry_writes()

    def _end_over_cap(self, renewal: Renewal, live: dict[str, tuple[Lease, QuotaLimits]]) -> None:
        for lost in renewal.over_cap:
            lease = lost.lease
            if self._live.pop(lease.session_id, None) is not None:
                self.slots_lost += 1
                logger.warning(
                    "quota store had lost the slot of session %s and the %s cap of project %r "
                    "is full: ending it",
                    lease.session_id,
                    lost.full,
                    lease.project,
                )
                self._on_slot_lost(lost, live[lease.session_id][1])

    def _retry_writes(self) -> None:
        """Write what is pending now, then every `RETRY_SECONDS` until the store takes it."""
        if self.pending_writes and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_until_done(), name="quota-writes")

    async def _write_until_done(self) -> None:
        while self.pending_writes:
            try:
                await self._write_pending()
            except QuotaStoreError as exc:
                self._lost_store(exc)
                await asyncio.sleep(RETRY_SECONDS)
            else:
                self._found_store()

    async def _write_pending(self) -> None:
        """Releases and charges that failed while the store was unreachable, oldest first."""
        for session_id, lease in list(self._unreleased.items()):
            await self._store.release(lease, self._lease_ttl)
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
