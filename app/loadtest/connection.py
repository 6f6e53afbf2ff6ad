"""A lean client WebSocket: the `websockets` sans-I/O protocol driven from transport callbacks.

Why not the `websockets` asyncio client: in the benchmark the load generator shares one core
with the emulator, so its cost per frame decides how many sessions can be offered before the
generator, not the endpoint, is what is measured. Measured on the 2-core benchmark machine at
200 sessions, the asyncio client costs about 125 µs of CPU per frame sent and answered; driving
the same sans-I/O protocol from `asyncio.Protocol` callbacks (no reader task, no message queue,
no future per message) costs about 70 µs. The protocol logic (handshake, masking,
permessage-deflate, pings, the closing handshake) stays the library's.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from typing import cast

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import parse_uri

MessageHandler = Callable[[bytes, int], None]  # (payload, monotonic ns when it arrived)


class LiveConnection(asyncio.Protocol):
    """One client connection. Messages are handed to `on_message` as they arrive."""

    def __init__(self, protocol: ClientProtocol, on_message: MessageHandler) -> None:
        loop = asyncio.get_running_loop()
        self._protocol = protocol
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._fragments: list[bytes] = []
        self._write_paused = False
        self._handshake: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        """Done once the TCP connection is gone, whoever closed it."""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        on_message: MessageHandler,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        compression: bool,
    ) -> LiveConnection:
        """Connect and complete the opening handshake (the caller bounds the time it takes).

        Raises `OSError` when the TCP or TLS connection fails and the `websockets` handshake
        exceptions (`InvalidStatus` for a refusal such as 401 or 429) when the upgrade does.
        """
        uri = parse_uri(url)
        extensions = enable_client_permessage_deflate(None) if compression else None
        protocol = ClientProtocol(uri, extensions=extensions)
        request = protocol.connect()
        request.headers["User-Agent"] = "live-relay-loadtest"
        for name, value in headers.items():
            request.headers[name] = value
        protocol.send_request(request)
        connection = cls(protocol, on_message)
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            lambda: connection,
            uri.host,
            uri.port,
            ssl=ssl_context if uri.secure else None,
            server_hostname=uri.host if uri.secure else None,
        )
        try:
            await connection._handshake
        except BaseException:
            connection._handshake.cancel()  # nobody will read a failure that comes later
            connection.abort()
            raise
        return connection

    def send_text(self, data: bytes) -> bool:
        """Send one text message now; False, sending nothing, if the peer is not keeping up
        (the kernel buffer is full) or the connection is no longer open."""
        if self._write_paused or self._protocol.state is not OPEN:
            return False
        self._protocol.send_text(data)
        self._flush()
        return True

    @property
    def close_code(self) -> int | None:
        """The code of the peer's close frame, 1006 if it sent none, None while open."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str:
        return self._protocol.close_reason or ""

    async def close(self, wait_seconds: float) -> None:
        """Start the closing handshake (1000); give the peer `wait_seconds` to finish it, then
        drop the connection."""
        if self._protocol.state is OPEN:
            self._protocol.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()
        try:
            async with asyncio.timeout(wait_seconds):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._protocol.receive_data(data)
        for event in self._protocol.events_received():
            if isinstance(event, Frame):
                self._frame_received(event)
            elif isinstance(event, Response):
                self._handshake_done()
        self._flush()

    def eof_received(self) -> None:
        self._protocol.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()  # idempotent: marks the protocol closed
        if not self._handshake.done():
            self._handshake.set_exception(
                exc or ConnectionResetError("connection closed during the opening handshake")
            )
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False

    # ---------------------------------------------------------------------------------------

    def _handshake_done(self) -> None:
        if self._handshake.done():
            return
        if self._protocol.handshake_exc is not None:
            self._handshake.set_exception(self._protocol.handshake_exc)
        else:
            self._handshake.set_result(None)

    def _frame_received(self, frame: Frame) -> None:
        # Control frames (ping, pong, close) are answered by the protocol itself.
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return
        if not frame.fin:
            self._fragments.append(bytes(frame.data))
            return
        data = bytes(frame.data)
        if self._fragments:
            data = b"".join([*self._fragments, data])
            self._fragments.clear()
        self._on_message(data, time.monotonic_ns())

    def _flush(self) -> None:
        if self._transport is None:
            return
        for data in self._protocol.data_to_send():
            if data:
                self._transport.write(data)
            elif self._transport.can_write_eof():
                self._transport.write_eof()
