"""Routes for the browser files under `app/browser/static/`, read once at start-up.

The kit is one dependency-free ES module (no build step): `/client/live-relay.js`, with its
AudioWorklet in `/client/live-relay-capture.js`. The demo page at `/` is served only when
`RELAY_DEMO_PAGE` is on, as `live-relay dev` does.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

KIT_FILES = {
    "live-relay.js": "text/javascript; charset=utf-8",
    "live-relay-capture.js": "text/javascript; charset=utf-8",
}
DEMO_FILE = "demo.html"
# Pages on other origins import the kit: a module script needs CORS to load cross-origin.
_KIT_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}


def _read(name: str) -> bytes:
    return files("app.browser").joinpath("static", name).read_bytes()


def _file_route(body: bytes, media_type: str, headers: dict[str, str]) -> Callable[[], Response]:
    def serve() -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return serve


def router(*, demo_page: bool) -> APIRouter:
    routes = APIRouter()
    for name, media_type in KIT_FILES.items():
        serve = _file_route(_read(name), media_type, _KIT_HEADERS)
        routes.add_api_route(f"/client/{name}", serve, methods=["GET"], include_in_schema=False)
    if demo_page:
        serve = _file_route(_read(DEMO_FILE), "text/html; charset=utf-8", {})
        routes.add_api_route("/", serve, methods=["GET"], include_in_schema=False)
    return routes
