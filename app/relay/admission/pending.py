"""Connections that are authenticated but not yet admitted, counted per project and credential.

Between the handshake and the quota decision a connection holds memory (a setup frame of up to
`max_setup_frame_bytes`) and no quota slot. Without a cap, one API key can open any number of
such connections. A `PendingSlot` is taken before the setup is read, so a connection over the
cap waits briefly for a slot and is then refused (HTTP 429) before the upgrade, having cost
nothing; the slot is given back as soon as the quota has decided. The counts are per process:
what they protect is this process's memory, not a project-wide quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from app.auth.credentials import find_credentials


def credential_id(conn: HTTPConnection) -> str:
    """A stable, non-secret name for the credential `conn` presents (already authenticated)."""
    credential = find_credentials(conn).credential
    return hashlib.blake2b(credential.encode(), digest_size=16).hexdigest()


@dataclass(eq=False)
class PendingSlot:
    """One pending connection's share of the counts; `release()` is idempotent."""

    owner: PendingAdmissions
    project: str
    credential: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner._release(self)


# A connection over a cap waits this long for a slot before it is refused: a burst of
# connects with one key is smoothed (setups normally arrive within a round trip), while
# connections that hold their slots (a trickled setup) get 429 in bounded time.
PENDING_WAIT_SECONDS = 2.0


@dataclass
class PendingAdmissions:
    per_project: int
    per_credential: int
    wait_seconds: float = PENDING_WAIT_SECONDS
    _projects: Counter[str] = field(default_factory=Counter)
    _credentials: Counter[str] = field(default_factory=Counter)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def take(self, project: str, credential: str) -> PendingSlot | str:
        """A slot, waiting up to `wait_seconds` for one; or the reason for refusing one.
        Waiting costs a socket and a task, nothing else: the WebSocket is not yet accepted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.wait_seconds):
                while self._refusal(project, credential) is not None:
                    await self._released.wait()
        refusal = self._refusal(project, credential)
        if refusal is not None:
            return refusal
        self._projects[project] += 1
        self._credentials[credential] += 1
        return PendingSlot(self, project, credential)

    def pending(self, project: str) -> int:
        return self._projects[project]

    def _refusal(self, project: str, credential: str) -> str | None:
        if self._projects[project] >= self.per_project:
            return (
                f'project "{project}" already has {self.per_project} connections waiting to '
                "start a session: retry shortly"
            )
        if self._credentials[credential] >= self.per_credential:
            return (
                f"this credential already has {self.per_credential} connections waiting to "
                "start a session: retry shortly"
            )
        return None

    def _release(self, slot: PendingSlot) -> None:
        for counts, key in ((self._projects, slot.project), (self._credentials, slot.credential)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]  # never keep a key for a project or credential that is gone
        # Wake every waiter once; each checks its own caps again.
        self._released.set()
        self._released = asyncio.Event()
