"""The values and the interface shared by every quota store.

A store counts two things per project: concurrent sessions, held as leases that expire unless
renewed, and tokens, in a sliding window of `WINDOW_SECONDS` made of one-second buckets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

WINDOW_SECONDS = 60
"""Length of the token window. A charge counts for 59 to 60 s: buckets are whole seconds."""

RefusalKind = Literal["sessions", "user_sessions", "tokens", "store"]
OverBudgetPolicy = Literal["shed", "end_all"]
"""What happens to live sessions while the token window is over budget (docs/quotas.md)."""


@dataclass(frozen=True)
class QuotaLimits:
    """The limits of one project: settings defaults or the project's overrides."""

    max_sessions: int = 10
    max_sessions_per_user: int | None = None
    tokens_per_minute: int = 4_000_000
    over_budget: OverBudgetPolicy = "shed"
    """"shed": end the sessions that spent the most, one turn boundary at a time, only while
    the window (less what shed sessions spent) is over the budget plus `shed_grace_percent`;
    "end_all": end every session at its next turn boundary once the budget is spent."""
    shed_grace_percent: int = 10
    """How far over the budget, in percent, the window may go before anyone is shed."""


@dataclass(frozen=True)
class Lease:
    """One concurrent-session slot, held while the session runs."""

    project: str
    user: str | None
    session_id: str
    started_at: float
    """Unix time."""


@dataclass(frozen=True)
class Refusal:
    """Why a session may not start: `reason` is its WebSocket close reason (code 1013)."""

    reason: str
    kind: RefusalKind
    """Low-cardinality metric label."""
    provisional_lapse_seconds: float | None = None
    """For a session cap that provisional leases (setups still on their way) helped fill: how
    long until the first of them lapses; None when none is held."""


@dataclass(frozen=True)
class TokenWindow:
    """Tokens a project used in the sliding window that ends now."""

    used: int
    limit: int
    seconds_until_free: float | None
    """While the budget is spent: how long until enough tokens leave the window; else None."""
    shed: bool = False
    """For a session's charge under the "shed" policy: the session is to end at its turn
    boundary, so that the project's rate comes back under its budget."""

    @property
    def spent(self) -> bool:
        return self.used >= self.limit


@dataclass(frozen=True)
class LostSlot:
    """A lease the store lost and could not take back, and which cap was full."""

    lease: Lease
    full: Literal["project", "user"]


@dataclass(frozen=True)
class Renewal:
    """What a heartbeat's renewal found."""

    restored: int
    """Leases the store had lost (let expire, or a Redis that restarted empty) and took back
    because their project had room for them."""
    over_cap: tuple[LostSlot, ...]
    """Lost leases the store did not take back because their project (or their user, under a
    per-user cap) is full: other sessions took the slots meanwhile. Their sessions must end,
    or the project would exceed its cap."""


class QuotaStoreError(Exception):
    """The quota store is unreachable or broken; the cause is chained (`raise ... from`)."""


class QuotaStore(Protocol):
    """Where quotas are counted: `MemoryQuotaStore` (one process) or `RedisQuotaStore`.

    Every method raises `QuotaStoreError` when the store cannot answer.
    """

    async def acquire(
        self, lease: Lease, limits: QuotaLimits, ttl: float, *, provisional: bool = False
    ) -> Refusal | None:
        """Record `lease` until now+ttl unless the token window is spent, a session limit is
        reached or the session was released already (`release` ran first: the admission was
        given up); expired leases are purged first. Atomic. Acquiring a held lease extends it.

        A `provisional` lease is taken for a socket whose setup is still on its way: it counts
        like any other, but a refusal says how many of the held leases are provisional and
        when the first lapses. Acquiring it again without `provisional` makes it a session's."""

    async def renew(
        self, leases: Sequence[Lease], limits: Mapping[str, QuotaLimits], ttl: float
    ) -> Renewal:
        """Extend every lease to now+ttl. A lease the store lost (a Redis restart) or let expire
        is taken back only while its project holds fewer than `limits[project].max_sessions`
        leases and, if it has a user and the project a per-user cap, its user fewer than
        `max_sessions_per_user`; oldest session first; a released one is never taken back."""

    async def release(self, lease: Lease, ttl: float) -> None:
        """Free the lease's slot, and remember for `ttl` that the session is over, so an
        `acquire` or `renew` of it that runs late (sent before, delayed by a stalled store) does
        not take the slot again. Releasing a lease that is not held only leaves that mark."""

    async def charge(
        self, project: str, tokens: int, limits: QuotaLimits, *, session_id: str | None = None
    ) -> TokenWindow:
        """Add `tokens` to the project's window and return the window after the charge.

        With `session_id` (a session holding a lease, under the "shed" policy) the tokens also
        count to the session's spend in the window, and the answer's `shed` says whether this
        session is one of the fewest top spenders whose ending brings the rate under the
        budget (docs/quotas.md#over-the-budget). Atomic: a session is shed once, and two
        replicas never shed for the same overage."""

    async def window(self, project: str, limits: QuotaLimits) -> TokenWindow:
        """The project's window as it is now."""

    async def sessions(self, project: str) -> list[Lease]:
        """The project's live leases, oldest session first."""

    async def held(self, project: str) -> int:
        """How many live leases the project holds: `sessions`' length, without reading them
        (the usage gauges ask every few seconds; a replica may hold thousands)."""

    async def consume_use(self, key: str, max_uses: int, expires_at: float) -> int | None:
        """Count one use of `key` (e.g. a token's jti, never the token itself): the uses left
        after this one, or None when they are used up or `expires_at` (unix time) has passed.
        The counter is forgotten at `expires_at`."""

    async def add_to_counters(
        self, scope: str, counters: Sequence[tuple[str, int, float]]
    ) -> list[int]:
        """Add each `(name, amount, expires_at)` to the scope's counter `name` (amount 0: only
        read it), which is forgotten at `expires_at` (unix time); return every counter's value
        after the additions. Atomic: another replica's additions never interleave. The budgets
        (app/ledger/budgets.py) count tokens and cost per day and month with it."""

    async def ping(self) -> None:
        """Return when the store answers."""

    async def warm(self) -> None:
        """Open the connections the store will need, and return when it answers."""

    async def aclose(self) -> None:
        """Release connections."""
