"""Telling a client that left from a relay defect, so that logs keep ERROR for real bugs.

A client may vanish at any await on it: while being refused, while its setup is read, while
its session is closed. Those are expected and logged at INFO with their cause; anything else
escaping a session is a defect in the relay and keeps its ERROR and traceback.
"""

from __future__ import annotations

from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected


def client_left(error: BaseException) -> str | None:
    """Why the client went away when `error` says it did; None when `error` is a defect."""
    if isinstance(error, WebSocketDisconnect):
        reason = f": {error.reason}" if error.reason else ""
        return f"client disconnected (code {error.code}{reason})"
    if isinstance(error, ClientDisconnected | ConnectionResetError | BrokenPipeError):
        return f"client connection lost ({type(error).__name__})"
    return None
