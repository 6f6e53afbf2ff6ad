"""The paths the `@google/genai` SDK opens in Gemini API mode, and an answer for every other path.

With `new GoogleGenAI({apiKey: token, httpOptions: {baseUrl: relayOrigin}})` the SDK's browser
build connects to

    {baseUrl}/ws/google.ai.generativelanguage.{v1alpha|v1beta|v1}.GenerativeService.BidiGenerateContent?key={token}

or, for an `auth_tokens/...` key, `...BidiGenerateContentConstrained?access_token=auth_tokens/...`
(credentials.py reads the token behind the prefix).
A `baseUrl` without a path gains a trailing `/` from `URL.toString()`, so the path often starts
with `//`. All of these serve a session in the Gemini API dialect (see dialect.py); `/v1/live`
stays the Vertex-dialect endpoint, untouched.

A WebSocket to any other path is refused with a reason naming `/v1/live` (refusals.py), not
Starlette's bare 403.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send

from app.logs import redact_target
from app.relay.client.refusals import refuse, unknown_path
from app.relay.endpoint import serve_live

API_VERSIONS = frozenset({"v1alpha", "v1beta", "v1"})
METHODS = frozenset({"BidiGenerateContent", "BidiGenerateContentConstrained"})
GEMINI_PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"

logger = logging.getLogger(__name__)

router = APIRouter()


# Plain Starlette routes, as `/v1/live` (endpoint.py): FastAPI's would hold its dependency
# machinery for the whole session.
@router.websocket_route(GEMINI_PATH)
@router.websocket_route("/" + GEMINI_PATH)  # baseUrl without a path: `//ws/...`
async def gemini_live(websocket: WebSocket) -> None:
    params = websocket.path_params
    if params["version"] not in API_VERSIONS or params["method"] not in METHODS:
        await _refuse_path(websocket)
        return
    await serve_live(websocket, "gemini")


def refuse_unknown_websocket_paths(app: FastAPI) -> None:
    """Answer a WebSocket to a path no route serves with a reason, for servers and browsers."""
    fallback: ASGIApp = app.router.default

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await fallback(scope, receive, send)
            return
        await _refuse_path(WebSocket(scope, receive, send))

    app.router.default = not_found


async def _refuse_path(websocket: WebSocket) -> None:
    refusal = unknown_path(websocket.url.path)
    # Logged without what an absolute-form target may carry (`http://user:key@host/...`).
    logger.info(
        "handshake refused (404): %s", unknown_path(redact_target(websocket.url.path)).message
    )
    await refuse(websocket, refusal)
