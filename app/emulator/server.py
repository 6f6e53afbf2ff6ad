"""The emulator as a server: a websockets listener on the Vertex Live path."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import ssl
from http import HTTPStatus
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from app.emulator.config import EmulatorConfig
from app.emulator.connection import (
    INTERNAL_ERROR,
    UNAUTHENTICATED,
    ConnectionContext,
    authorized,
    serve_connection,
)
from app.emulator.pongs import pong_fault_connection
from app.emulator.resumption import HandleStore
from app.emulator.stats import EmulatorStats

logger = logging.getLogger(__name__)

# The Vertex method path; real SDK traffic sometimes doubles the leading slash.
VERTEX_PATH = re.compile(
    r"/+ws/google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/BidiGenerateContent"
)
MAX_CLIENT_FRAME_BYTES = 16 * 1024 * 1024


class Emulator:
    """An offline stand-in for the Vertex AI Live API (`BidiGenerateContent`).

    Use `async with Emulator(config) as emulator:` (it listens on 127.0.0.1, any free port,
    unless told otherwise) or `start()` / `stop()`. `base_url` is what google-genai's
    `http_options.base_url` needs; `stats` shows what reached the emulator.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.stats = EmulatorStats()
        self._context = ConnectionContext(
            self.config,
            self.stats,
            HandleStore(self.config.handle_ttl_seconds, max_handles=self.config.max_handles),
            itertools.count(1),
        )
        self._start_kwargs = {"host": host, "port": port, "ssl_context": ssl_context}
        self._server: Server | None = None
        self._host = host
        self._tls = False

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        faults = self.config.faults
        self._server = await serve(
            self._handle,
            host,
            port,
            ssl=ssl_context,
            process_request=self._process_request,
            compression="deflate" if self.config.permessage_deflate else None,
            max_size=MAX_CLIENT_FRAME_BYTES,
            # The service answers pings but does not send its own.
            ping_interval=None,
            create_connection=(
                pong_fault_connection(faults.pong_delay_seconds) if faults.holds_pongs else None
            ),
        )
        self._host, self._tls = host, ssl_context is not None

    async def stop(self) -> None:
        """Close every connection with 1001 and stop listening; returns when all are done."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Emulator:
        await self.start(**self._start_kwargs)  # type: ignore[arg-type]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """`ws://HOST:PORT` or `wss://HOST:PORT`, without a path."""
        host = self._host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass  # a host name
        return f"{'wss' if self._tls else 'ws'}://{host}:{self.port}"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not VERTEX_PATH.fullmatch(request.path.partition("?")[0]):
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found: no such method.\n")
        authorization = request.headers.get("Authorization")
        self.stats.last_authorization = authorization
        if self.config.auth_failure == "reject" and not authorized(
            authorization, self.config.require_token
        ):
            return connection.respond(HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED + "\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        stats = self.stats
        stats.connections_accepted += 1
        stats.connections_open += 1
        if ws.protocol.extensions:
            stats.compressed_connections += 1
        number = stats.connections_accepted
        if not self.config.faults.apply_to(number) and hasattr(ws, "holds_pongs"):
            ws.holds_pongs = False
        match = VERTEX_PATH.fullmatch(ws.request.path.partition("?")[0]) if ws.request else None
        try:
            await serve_connection(
                ws, self._context, match.group(1) if match else "v1beta1", number
            )
        except ConnectionClosed:
            pass
        except Exception:
            # The one broad handler: a bug in one session must not take the emulator down.
            logger.exception("emulator session failed")
            await ws.close(1011, INTERNAL_ERROR)
        finally:
            stats.connections_open -= 1
            if (received := ws.protocol.close_rcvd) is not None:
                stats.closes_received.append((received.code, received.reason))
            logger.info(
                "emulator connection closed: code=%s reason=%r",
                ws.close_code,
                ws.close_reason,
            )
