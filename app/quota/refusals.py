"""The refusals a client sees, worded once for every store.

A refusal's reason becomes a WebSocket close reason, which RFC 6455 caps at 123 bytes: names
quoted in it are shortened so the numbers that explain the refusal always fit.
"""

from __future__ import annotations

import math

from app.quota.types import LostSlot, QuotaLimits, Refusal, TokenWindow

MAX_CLOSE_REASON_BYTES = 123
MAX_NAME_BYTES = 32
ELLIPSIS = "…"

STORE_UNAVAILABLE = Refusal("UNAVAILABLE: quota store unreachable", "store")
ALREADY_RELEASED = Refusal("UNAVAILABLE: admission given up after a quota store timeout", "store")
"""What `acquire` answers for a session whose admission was given up (released) before it ran."""


def sessions_refusal(
    project: str, held: int, limit: int, starting: int = 0, lapse: float | None = None
) -> Refusal:
    """`held` counts sessions; `starting`, the provisional leases of sockets whose setup is
    on its way (the first lapses in `lapse` seconds)."""
    return Refusal(
        _fit(
            f"RESOURCE_EXHAUSTED: project {_quoted(project)} has {held} of {limit} "
            f"concurrent sessions{_starting(starting)}"
        ),
        "sessions",
        lapse,
    )


def user_sessions_refusal(
    user: str, held: int, limit: int, starting: int = 0, lapse: float | None = None
) -> Refusal:
    return Refusal(
        _fit(f"RESOURCE_EXHAUSTED: user {_quoted(user)} has {held} of {limit} concurrent sessions"),
        "user_sessions",
        lapse if starting else None,
    )


def _starting(starting: int) -> str:
    return f" and {starting} starting" if starting else ""


def lost_slot_reason(lost: LostSlot, limits: QuotaLimits) -> str:
    """The close reason of a running session ended because its slot was lost (the store
    restarted empty, or this replica froze past the lease TTL) and, meanwhile, its project or
    its user (under a per-user cap) filled up."""
    lease = lost.lease
    if lost.full == "user" and lease.user is not None:
        full = f"user {_quoted(lease.user)} has its {limits.max_sessions_per_user} sessions"
    else:
        full = f"project {_quoted(lease.project)} is full ({limits.max_sessions} sessions)"
    return _fit(f"RESOURCE_EXHAUSTED: slot lost in a quota store outage; {full}")


def tokens_refusal(project: str, limit: int, seconds_until_free: float) -> Refusal:
    # Rounded up: a client that retries after the advertised delay must find the window free.
    retry_in = max(1, math.ceil(seconds_until_free))
    return Refusal(
        _fit(
            f"RESOURCE_EXHAUSTED: project {_quoted(project)} spent its {limit} tokens per minute; "
            f"retry in {retry_in} s"
        ),
        "tokens",
    )


def over_budget_reason(project: str, window: TokenWindow) -> str:
    """The close reason of a live session ended because its project's token window is over
    budget (shed, or every session under "end_all"): the budget, the use and the retry delay."""
    retry_in = max(1, math.ceil(window.seconds_until_free or 1))
    return _fit(
        f"RESOURCE_EXHAUSTED: project {_quoted(project)} used {window.used} of its "
        f"{window.limit} tokens per minute; retry in {retry_in} s"
    )


def _quoted(name: str) -> str:
    return f'"{_truncate(name, MAX_NAME_BYTES)}"'


def _fit(reason: str) -> str:
    return _truncate(reason, MAX_CLOSE_REASON_BYTES)


def _truncate(text: str, max_bytes: int) -> str:
    """`text` if it fits in `max_bytes` of UTF-8, else its longest prefix that fits with `…`."""
    if len(text.encode()) <= max_bytes:
        return text
    room = max_bytes - len(ELLIPSIS.encode())
    # errors="ignore" drops a character cut in half by the byte limit.
    return text.encode()[:room].decode(errors="ignore") + ELLIPSIS
