"""A quota store in this process's memory: exact for one process, blind to any other.

It is the store of `live-relay dev` and of a single replica without Redis. Its methods never
await, so each one runs atomically on the event loop, the way a Lua script runs in Redis.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.quota.refusals import (
    ALREADY_RELEASED,
    sessions_refusal,
    tokens_refusal,
    user_sessions_refusal,
)
from app.quota.types import (
    WINDOW_SECONDS,
    Lease,
    LostSlot,
    QuotaLimits,
    Refusal,
    Renewal,
    TokenWindow,
)


@dataclass
class _Project:
    expiries: dict[str, float] = field(default_factory=dict)
    """session id -> unix time its lease expires."""
    leases: dict[str, Lease] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)
    """unix second -> tokens charged during that second."""
    released: dict[str, float] = field(default_factory=dict)
    """session id -> unix time until which its lease may not be taken again."""
    provisional: set[str] = field(default_factory=set)
    """Session ids of `leases` taken while their setup was on its way."""
    spend: dict[tuple[int, str], int] = field(default_factory=dict)
    """(unix second, session id) -> tokens the session charged then (the "shed" policy)."""
    shed: dict[str, float] = field(default_factory=dict)
    """session id -> unix time until which it counts as shed."""


@dataclass
class _UseCounter:
    uses: int
    expires_at: float


class MemoryQuotaStore:
    """`QuotaStore` for one process. `clock` (unix time) is injectable so tests can slide the
    token window without waiting a minute."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._projects: dict[str, _Project] = {}
        self._uses: dict[str, _UseCounter] = {}
        self._counters: dict[tuple[str, str], _UseCounter] = {}

    async def acquire(
        self, lease: Lease, limits: QuotaLimits, ttl: float, *, provisional: bool = False
    ) -> Refusal | None:
        now = self._clock()
        project = self._live_project(lease.project, now)
        if lease.session_id in project.released:
            return ALREADY_RELEASED
        if lease.session_id not in project.leases:
            refusal = self._refusal(project, lease, limits, now)
            if refusal is not None:
                self._forget_if_idle(lease.project, project)
                return refusal
        self._record(project, lease, now + ttl)
        if provisional:
            project.provisional.add(lease.session_id)
        else:
            project.provisional.discard(lease.session_id)
        return None

    async def renew(
        self, leases: Sequence[Lease], limits: Mapping[str, QuotaLimits], ttl: float
    ) -> Renewal:
        now = self._clock()
        lost: list[Lease] = []
        for lease in leases:
            project = self._live_project(lease.project, now)
            project.provisional.discard(lease.session_id)  # renewed: a session's lease
            if lease.session_id in project.leases:
                project.expiries[lease.session_id] = now + ttl
            elif lease.session_id not in project.released:
                lost.append(lease)
        restored, over_cap = 0, []
        for lease in sorted(lost, key=lambda lease: lease.started_at):
            project = self._live_project(lease.project, now)
            full = self._full_cap(project, lease, limits[lease.project])
            if full is None:
                self._record(project, lease, now + ttl)
                restored += 1
            else:
                over_cap.append(LostSlot(lease, full))
        for name in {lease.project for lease in leases}:
            self._forget_if_idle(name, self._live_project(name, now))
        return Renewal(restored, tuple(over_cap))

    async def release(self, lease: Lease, ttl: float) -> None:
        now = self._clock()
        project = self._live_project(lease.project, now)
        project.leases.pop(lease.session_id, None)
        project.expiries.pop(lease.session_id, None)
        project.provisional.discard(lease.session_id)
        project.released[lease.session_id] = now + ttl

    async def charge(
        self, project: str, tokens: int, limits: QuotaLimits, *, session_id: str | None = None
    ) -> TokenWindow:
        if tokens < 0:
            raise ValueError(f"cannot charge a negative number of tokens ({tokens})")
        now = self._clock()
        state = self._live_project(project, now)
        second = math.floor(now)
        state.buckets[second] = state.buckets.get(second, 0) + tokens
        window = self._window(state, limits, now)
        if session_id is not None:
            if tokens:
                key = (second, session_id)
                state.spend[key] = state.spend.get(key, 0) + tokens
            if self._sheds(state, session_id, window, limits):
                state.shed[session_id] = now + WINDOW_SECONDS
                window = dataclasses.replace(window, shed=True)
        self._forget_if_idle(project, state)
        return window

    async def window(self, project: str, limits: QuotaLimits) -> TokenWindow:
        now = self._clock()
        state = self._live_project(project, now)
        window = self._window(state, limits, now)
        self._forget_if_idle(project, state)
        return window

    async def sessions(self, project: str) -> list[Lease]:
        state = self._live_project(project, self._clock())
        leases = sorted(state.leases.values(), key=lambda lease: lease.started_at)
        self._forget_if_idle(project, state)
        return leases

    async def held(self, project: str) -> int:
        state = self._live_project(project, self._clock())
        held = len(state.leases)
        self._forget_if_idle(project, state)
        return held

    async def consume_use(self, key: str, max_uses: int, expires_at: float) -> int | None:
        now = self._clock()
        # Counters of expired tokens would otherwise pile up for the life of the process.
        for stale in [name for name, counter in self._uses.items() if counter.expires_at <= now]:
            del self._uses[stale]
        if expires_at <= now:
            return None
        counter = self._uses.setdefault(key, _UseCounter(0, expires_at))
        if counter.uses >= max_uses:
            return None
        counter.uses += 1
        return max_uses - counter.uses

    async def add_to_counters(
        self, scope: str, counters: Sequence[tuple[str, int, float]]
    ) -> list[int]:
        now = self._clock()
        for stale in [key for key, held in self._counters.items() if held.expires_at <= now]:
            del self._counters[stale]
        values = []
        for name, amount, expires_at in counters:
            if amount < 0:
                raise ValueError(f"cannot add a negative amount ({amount})")
            held = self._counters.get((scope, name))
            if held is None:
                if amount == 0:
                    values.append(0)
                    continue
                held = self._counters[scope, name] = _UseCounter(0, expires_at)
            if amount:
                held.uses += amount
                held.expires_at = expires_at
            values.append(held.uses)
        return values

    async def ping(self) -> None:
        return None

    async def warm(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _live_project(self, name: str, now: float) -> _Project:
        """The project's state with expired leases and buckets that left the window removed."""
        project = self._projects.setdefault(name, _Project())
        for session_id in [sid for sid, expiry in project.expiries.items() if expiry <= now]:
            del project.expiries[session_id]
            del project.leases[session_id]
            project.provisional.discard(session_id)
        for session_id in [sid for sid, until in project.released.items() if until <= now]:
            del project.released[session_id]
        oldest = math.floor(now) - WINDOW_SECONDS + 1
        for second in [second for second in project.buckets if second < oldest]:
            del project.buckets[second]
        for key in [key for key in project.spend if key[0] < oldest]:
            del project.spend[key]
        for session_id in [sid for sid, until in project.shed.items() if until <= now]:
            del project.shed[session_id]
        return project

    def _forget_if_idle(self, name: str, project: _Project) -> None:
        if not (
            project.leases or project.buckets or project.released or project.spend or project.shed
        ):
            self._projects.pop(name, None)

    @staticmethod
    def _sheds(
        project: _Project, session_id: str, window: TokenWindow, limits: QuotaLimits
    ) -> bool:
        """Whether `session_id` is among the fewest top spenders of the live, unshed sessions
        whose ending brings the window's kept use under the budget (tokens.lua, same rule)."""
        grace = limits.shed_grace_percent
        if window.used * 100 <= window.limit * (100 + grace) or session_id in project.shed:
            return False
        spent: dict[str, int] = {}
        for (_, owner), tokens in project.spend.items():
            spent[owner] = spent.get(owner, 0) + tokens
        kept = window.used
        live = []
        for owner, tokens in sorted(spent.items(), key=lambda item: item[1], reverse=True):
            if owner in project.shed or owner not in project.leases:
                kept -= tokens
            else:
                live.append((owner, tokens))
        if kept * 100 <= window.limit * (100 + grace):
            return False
        excess, covered = kept - window.limit, 0
        for owner, tokens in live:
            if covered >= excess:
                return False
            if owner == session_id:
                return True
            covered += tokens
        return False

    @classmethod
    def _refusal(
        cls, project: _Project, lease: Lease, limits: QuotaLimits, now: float
    ) -> Refusal | None:
        window = cls._window(project, limits, now)
        if window.seconds_until_free is not None:
            return tokens_refusal(lease.project, window.limit, window.seconds_until_free)
        starting = len(project.provisional)
        lapse = None
        if starting:
            lapse = min(project.expiries[sid] for sid in project.provisional) - now
        if len(project.leases) >= limits.max_sessions:
            return sessions_refusal(
                lease.project,
                len(project.leases) - starting,
                limits.max_sessions,
                starting,
                lapse,
            )
        user_cap = limits.max_sessions_per_user
        if lease.user is not None and user_cap is not None:
            held = sum(1 for other in project.leases.values() if other.user == lease.user)
            if held >= user_cap:
                return user_sessions_refusal(lease.user, held, user_cap, starting, lapse)
        return None

    @staticmethod
    def _full_cap(
        project: _Project, lease: Lease, limits: QuotaLimits
    ) -> Literal["project", "user"] | None:
        """The cap that leaves no room for `lease`, or None when it fits."""
        if len(project.leases) >= limits.max_sessions:
            return "project"
        user_cap = limits.max_sessions_per_user
        if lease.user is None or user_cap is None:
            return None
        held = sum(1 for other in project.leases.values() if other.user == lease.user)
        return "user" if held >= user_cap else None

    @staticmethod
    def _record(project: _Project, lease: Lease, expiry: float) -> None:
        project.leases[lease.session_id] = lease
        project.expiries[lease.session_id] = expiry

    @staticmethod
    def _window(project: _Project, limits: QuotaLimits, now: float) -> TokenWindow:
        used = sum(project.buckets.values())
        limit = limits.tokens_per_minute
        if used < limit:
            return TokenWindow(used, limit, None)
        # The oldest buckets leave first; find the one whose departure brings usage under limit.
        must_free, freed = used - limit + 1, 0
        for second in sorted(project.buckets):
            freed += project.buckets[second]
            if freed >= must_free:
                return TokenWindow(used, limit, second + WINDOW_SECONDS - now)
        # Only a zero budget gets here: it never frees, so say "look again after a window".
        return TokenWindow(used, limit, float(WINDOW_SECONDS))
