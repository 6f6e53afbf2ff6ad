"""Servers the authentication tests talk to, all on loopback:

- `KeyServer` plays the identity providers: a JWKS, Google's Firebase certificates and the App
  Check JWKS, served by the standard library's HTTP server in a thread.
- `AuthServer` serves a tiny app that puts the real `Authenticator` in front of a WebSocket
  route (which reports the principal it was given, then closes) and mounts the real
  `POST /v1/tokens` router, under uvicorn in a thread of its own.

Both run in threads so synchronous clients (the property-based test) and asynchronous ones
can use them alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket

from app.auth.authenticator import Authenticator
from app.auth.credentials import select_subprotocol
from app.auth.principal import AuthFailure
from app.auth.token_api import build_token_router
from app.quota.types import QuotaStore
from app.settings import Settings


class KeyServer:
    """JSON documents by path, with a count of requests per path; `down` answers 503."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                body = server.documents.get(self.path)
                status = 503 if server.down else 200 if body is not None else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if status == 200 and body is not None:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `hits` instead."""

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def publish(self, path: str, document: Any) -> str:
        self.documents[path] = json.dumps(document).encode()
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)


def build_auth_app(authenticator: Authenticator, settings: Settings, store: QuotaStore) -> FastAPI:
    """`WS /v1/live` answering with the principal as JSON, and `POST /v1/tokens`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await authenticator.aclose()
        await store.aclose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(build_token_router(authenticator, settings))

    @app.websocket("/v1/live")
    async def live(websocket: WebSocket) -> None:
        try:
            principal = await authenticator.authenticate(websocket)
        except AuthFailure as failure:
            await websocket.send_denial_response(failure.response())
            return
        await websocket.accept(subprotocol=select_subprotocol(websocket))
        await websocket.send_json(
            {
                "project": principal.project.name,
                "user": principal.user,
                "method": principal.method,
                "forced_setup": dict(principal.forced_setup),
                "expires_at": principal.expires_at,
            }
        )
        await websocket.close()

    return app


# uvicorn's websockets-sansio protocol logs this after every denial response, although the
# denial went out as sent (https://github.com/Kludex/uvicorn/pull/3138, open). An app that truly
# returned without answering is still caught: its client gets a 500, which the tests check.
SPURIOUS_DENIAL_ERROR = "ASGI callable returned without completing handshake."


class ErrorRecorder(logging.Handler):
    """Every record at ERROR or above, from any thread: an app that crashed logs one."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != SPURIOUS_DENIAL_ERROR:
            self.records.append(record)


class AuthServer:
    """`build_auth_app` under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_config=None,
            # The access log is the logging module's business (it redacts query strings); these
            # tests check what the authentication layer itself writes.
            access_log=False,
        )
        self._socket = config.bind_socket()
        # Accepted connections inherit this: uvicorn writes response headers and body apart,
        # and Nagle's algorithm would hold the body for the client's delayed ACK (~40 ms).
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._socket])), daemon=True
        )

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/live"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()
