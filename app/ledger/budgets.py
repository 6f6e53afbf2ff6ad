"""Budgets: tokens per day and month, cost per month, per project and per user.

Counted in the quota store (Redis across replicas: one Lua script adds to every counter a
report touches at once, lua/counters.lua), in UTC days and months. A session is admitted while
every budget of its project and user is under its limit; the usage report that takes a budget
to its limit or past it ends the session at the next turn boundary (the endpoint sends a goAway
first, and ends it anyway after `RELAY_BUDGET_GRACE_SECONDS` if no turn ends). So a budget is
exceeded by at most the reports of sessions already running when it was reached, never by a
new session.

Cost is counted in micro-USD (integers), priced from the ledger's price table as reports come.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from app.ledger.metrics import LedgerMetrics
from app.quota.types import QuotaStore, QuotaStoreError

logger = logging.getLogger(__name__)

MICRO = 1_000_000
# Counters outlive their period by a day, so a clock a little off never reads a fresh zero.
EXPIRY_MARGIN_SECONDS = 86_400
STORE_UNAVAILABLE = "UNAVAILABLE: quota store unreachable"

Period = Literal["day", "month"]
Budget = Literal[
    "tokens_per_day",
    "tokens_per_month",
    "usd_per_month",
    "user_tokens_per_day",
    "user_tokens_per_month",
]
PROJECT_BUDGETS: tuple[Budget, ...] = ("tokens_per_day", "tokens_per_month", "usd_per_month")


@dataclass(frozen=True)
class BudgetLimits:
    """A project's budgets (None: no such budget); from `[projects.NAME.budgets]`."""

    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    usd_per_month: float | None = None
    user_tokens_per_day: int | None = None
    user_tokens_per_month: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in get_args(Budget))


@dataclass(frozen=True)
class _Counter:
    budget: Budget
    name: str  # the counter's name in the store, period included
    limit: int  # tokens, or micro-USD
    resets_at: float  # unix time the period ends
    user: str | None  # the user of a per-user budget


def _period(now: datetime, period: Period) -> tuple[str, datetime]:
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        following = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return start.strftime("%Y-%m-%d"), following
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), following


def _counters(limits: BudgetLimits, user: str | None, now: float) -> list[_Counter]:
    moment = datetime.fromtimestamp(now, UTC)
    counters = []
    wanted: tuple[tuple[Budget, Period, str, float | None, bool], ...] = (
        ("tokens_per_day", "day", "tokens", limits.tokens_per_day, False),
        ("tokens_per_month", "month", "tokens", limits.tokens_per_month, False),
        ("usd_per_month", "month", "usd", limits.usd_per_month, False),
        ("user_tokens_per_day", "day", "tokens", limits.user_tokens_per_day, True),
        ("user_tokens_per_month", "month", "tokens", limits.user_tokens_per_month, True),
    )
    for budget, period, unit, limit, per_user in wanted:
        if limit is None or (per_user and user is None):
            continue
        key, ends = _period(moment, period)
        name = f"{unit}:{period}:{key}" + (f":user:{user}" if per_user else "")
        amount = round(limit * MICRO) if unit == "usd" else int(limit)
        counters.append(
            _Counter(budget, name, amount, ends.timestamp(), user if per_user else None)
        )
    return counters


def _refusal(project: str, counter: _Counter, used: int) -> str:
    who = f'user "{counter.user}"' if counter.user is not None else f'project "{project}"'
    if counter.budget == "usd_per_month":
        spent = f"${used / MICRO:.2f} of its ${counter.limit / MICRO:.2f} per month"
    else:
        per = "day" if counter.budget.endswith("day") else "month"
        spent = f"{used} of its {counter.limit} tokens per {per}"
    resets = datetime.fromtimestamp(counter.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"RESOURCE_EXHAUSTED: {who} used {spent}; resets {resets}"


@dataclass(frozen=True)
class BudgetState:
    """What a check or charge found: the refusal (None: within budgets) and the project-level
    budgets' use, for the gauges."""

    refusal: str | None
    used: dict[Budget, float]


class Budgets:
    def __init__(self, store: QuotaStore, metrics: LedgerMetrics, *, fail_open: bool) -> None:
        self._store = store
        self._metrics = metrics
        self._fail_open = fail_open

    async def admit(
        self, project: str, user: str | None, limits: BudgetLimits, now: float
    ) -> BudgetState:
        """Whether a new session may start: every budget under its limit."""
        return await self._apply(project, user, limits, now, tokens=0, micro_usd=0, admit=True)

    async def charge(
        self,
        project: str,
        user: str | None,
        limits: BudgetLimits,
        now: float,
        *,
        tokens: int,
        usd: float,
    ) -> BudgetState:
        """Count one usage report; the refusal says which budget it took to its limit."""
        micro_usd = math.ceil(usd * MICRO) if usd > 0 else 0
        return await self._apply(
            project, user, limits, now, tokens=tokens, micro_usd=micro_usd, admit=False
        )

    async def _apply(
        self,
        project: str,
        user: str | None,
        limits: BudgetLimits,
        now: float,
        *,
        tokens: int,
        micro_usd: int,
        admit: bool,
    ) -> BudgetState:
        counters = _counters(limits, user, now)
        if not counters:
            return BudgetState(None, {})
        request: Sequence[tuple[str, int, float]] = [
            (
                counter.name,
                micro_usd if counter.budget == "usd_per_month" else tokens,
                counter.resets_at + EXPIRY_MARGIN_SECONDS,
            )
            for counter in counters
        ]
        try:
            values = await self._store.add_to_counters(project, request)
        except QuotaStoreError as exc:
            logger.warning("budgets of project %r not counted: %s", project, exc)
            refused = admit and not self._fail_open
            return BudgetState(STORE_UNAVAILABLE if refused else None, {})
        refusal = None
        used: dict[Budget, float] = {}
        for counter, value in zip(counters, values, strict=True):
            if counter.budget in PROJECT_BUDGETS:
                usd = counter.budget == "usd_per_month"
                used[counter.budget] = value / MICRO if usd else value
                self._metrics.budget_used.labels(project, counter.budget).set(used[counter.budget])
                limit = counter.limit / MICRO if usd else counter.limit
                self._metrics.budget_limit.labels(project, counter.budget).set(limit)
            if refusal is None and value >= counter.limit:
                refusal = _refusal(project, counter, value)
        return BudgetState(refusal, used)
