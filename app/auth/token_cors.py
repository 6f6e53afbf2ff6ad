"""CORS for `POST /v1/tokens`, so a page holding a user's Firebase ID token or JWT mints its own
session token without a backend of its own.

Which origins may call is the projects' `allowed_origins`. A preflight carries no credential, so
it cannot tell which project will answer: it is granted when any project lists the origin. The
request itself then meets the authenticator, which refuses (403, with a reason the page can read
thanks to the CORS headers) an origin that this credential's project does not list.

No cookies are involved (`Access-Control-Allow-Credentials` is never sent): the credential
travels in `Authorization`, which a foreign page does not have.

API keys belong on servers, never in a page: anyone can read a page's source, and a key mints
tokens (and opens sessions) for its whole project until it is rotated. A page should hold only
its user's own short-lived ID token, or a session token a backend minted for it.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.origins import origin_allowed

TOKENS_PATH = "/v1/tokens"
ALLOWED_HEADERS = "authorization, content-type, x-firebase-appcheck"
PREFLIGHT_MAX_AGE_SECONDS = 600


class TokenCors:
    """ASGI middleware answering CORS for `/v1/tokens` only; every other request passes as is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOKENS_PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or not _listed_anywhere(scope, origin):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(origin)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers.append("Vary", "Origin")
                response_headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _listed_anywhere(scope: Scope, origin: str) -> bool:
    relay = getattr(scope["app"].state, "relay", None)
    if relay is None:  # the lifespan has not run: no projects yet
        return False
    projects = relay.authenticator.registry.projects.values()
    return any(origin_allowed(origin, project.allowed_origins) for project in projects)


def _preflight(origin: str) -> Response:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
            "Vary": "Origin",
        },
    )
