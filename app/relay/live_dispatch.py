"""`WS /v1/live` handed straight to its handler, past the layers it does not use.

Through FastAPI, a WebSocket passes its telemetry check (three OpenTelemetry provider lookups
per connection, although nothing is configured), four middlewares (server errors, exceptions,
an exit stack for dependencies, the token route's CORS), and the router's match over every
route, before the handler runs. `/v1/live` uses none of them: it has no dependency, catches
every exception of its session itself (endpoint.py), and is a plain Starlette route. In a
storm profile those layers held 16.5 % of the relay's Python samples (3.2 % left after this),
and their coroutine frames, alive as long as each session, cost ~8 KB of RSS per held session
(docs/performance-storms.md). Every other request, and `/v1/live` under a root path, takes the
whole stack as before.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from app.relay.endpoint import LIVE_PATH, serve_live


class RelayApp(FastAPI):
    """FastAPI, with WebSockets to `/v1/live` served directly."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "websocket"
            and scope["path"] == LIVE_PATH
            and not scope.get("root_path")
            and not self.root_path
        ):
            scope["app"] = self  # as Starlette sets it: the handler finds the relay through it
            await serve_live(WebSocket(scope, receive, send), "vertex")
            return
        await super().__call__(scope, receive, send)
