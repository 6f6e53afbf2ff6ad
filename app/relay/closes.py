"""WebSocket close codes the relay sends, and how a close crosses from one leg to the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NORMAL = 1000
GOING_AWAY = 1001
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

MAX_REASON_BYTES = 123  # RFC 6455: the close payload is at most 125 bytes, 2 of them the code
CUT_MARK = "\u2026"  # "…": a reader sees that the reason went on


def truncate_reason(reason: str) -> str:
    """Fit a close reason in 123 UTF-8 bytes without splitting a character; a cut reason ends
    with "…" so that nobody takes its last words for the whole message."""
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    room = MAX_REASON_BYTES - len(CUT_MARK.encode())
    return encoded[:room].decode(errors="ignore").rstrip() + CUT_MARK


def sendable(code: int | None) -> bool:
    """Whether a close frame may carry `code` (1005, 1006 and 1015 only describe what happened)."""
    return code is not None and (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


Side = Literal["client", "upstream", "relay"]


@dataclass(frozen=True)
class Ending:
    """Why a session ended and what each leg is told.

    `closed_by` is who started the close: a leg that closed itself is not sent a close again.
    `outcome` is a low-cardinality label for metrics and logs.
    """

    closed_by: Side
    code: int
    reason: str
    outcome: str

    @property
    def client_close(self) -> tuple[int, str] | None:
        """The close frame to send the client, or None when the client closed first."""
        if self.closed_by == "client":
            return None
        if self.closed_by == "upstream" and not sendable(self.code):
            # The upstream vanished without a close frame: never pass a 1006 on, say what happened.
            return INTERNAL_ERROR, "upstream connection lost"
        return self.code, truncate_reason(self.reason)

    @property
    def upstream_close(self) -> tuple[int, str] | None:
        """The close frame to send the upstream, or None when the upstream closed first."""
        if self.closed_by == "upstream":
            return None
        if self.closed_by == "client":
            code = self.code if sendable(self.code) else NORMAL
            return code, truncate_reason(self.reason)
        return NORMAL, truncate_reason(self.reason)
