"""Refusals as values: one place turns "this handshake is refused" into the answer a client reads.

Servers and mobile apps read the HTTP status and JSON body of a refused WebSocket handshake.
Browsers cannot: a page sees any refused handshake as close code 1006 with no reason. So a
request that carries an `Origin` header (every browser WebSocket does; servers do not) is
accepted and closed at once with a code and reason the page reads in `onclose`:

| HTTP status | close code | when |
|---|---|---|
| 401 | 4401 | no credential, or one that does not verify |
| 403 | 4403 | wrong origin, disabled project, session token spent or past its deadline |
| 404 | 4404 | no Live endpoint at this path (the reason names `/v1/live`) |
| 503 | 4503 | the relay is shutting down, or cannot check the credential now |

4000 + the HTTP status keeps one mapping to remember; the 4000-4999 range is the application's
own (RFC 6455 section 7.4.2), so these never collide with a code the Live API sends.
Accepting first spends nothing: no upstream is opened, no quota is taken, no frame is read.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth.credentials import select_subprotocol
from app.auth.principal import AuthFailure
from app.relay.closes import truncate_reason
from app.web import error_response

logger = logging.getLogger(__name__)

BROWSER_CLOSE_BASE = 4000
LIVE_PATH = "/v1/live"


@dataclass(frozen=True)
class Refusal:
    """A handshake the relay will not serve: the HTTP status and a message naming the fix."""

    status: int
    message: str

    @property
    def close_code(self) -> int:
        """The close code a browser reads in `onclose`: 4000 + the HTTP status."""
        return BROWSER_CLOSE_BASE + self.status

    @classmethod
    def from_auth_failure(cls, failure: AuthFailure) -> Refusal:
        return cls(failure.status_code, failure.message)


def unknown_path(path: str) -> Refusal:
    shown = path if len(path) <= 80 else path[:77] + "..."
    return Refusal(
        404,
        f'no Live endpoint at "{shown}": connect to {LIVE_PATH} '
        "(or the Gemini API path the @google/genai SDK opens)",
    )


def comes_from_browser(websocket: WebSocket) -> bool:
    """Browsers always send `Origin` on a WebSocket handshake; server clients normally do not."""
    return "origin" in websocket.headers


async def refuse(websocket: WebSocket, refusal: Refusal) -> None:
    """Answer a handshake that will not be served, in the form this client can read."""
    if not comes_from_browser(websocket):
        await websocket.send_denial_response(error_response(refusal.status, refusal.message))
        return
    # Echo our subprotocol when offered: a browser fails a handshake that answers none of the
    # subprotocols it asked for, and would then see 1006 again instead of the reason.
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.accept(subprotocol=select_subprotocol(websocket))
        await websocket.close(refusal.close_code, truncate_reason(refusal.message))
