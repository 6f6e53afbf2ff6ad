"""A lean upstream connection: the `websockets` sans-I/O client protocol on an asyncio Protocol.

Why not the `websockets` asyncio client: a relay holds one upstream connection per live
session, and both its memory and its cost per frame count (issue 15). The asyncio client
keeps a keepalive task, an assembler with its own queue and locks, an async context manager
entered on every send, and the handshake request and response for the connection's life.
Here the same protocol object (handshake, masking, ping answers, the closing handshake,
`ConnectionClosed` with the received close frame) is driven straight from transport
callbacks: a received message goes straight to the waiting reader (to a deque when none
waits), `send` writes to the transport and awaits only when the transport's buffer is over its
high-water mark, and keepalive is one loop timer. See docs/performance-storms.md ("Memory per
live session") for what it saves.

What callers see is what they saw from `websockets.asyncio.client.ClientConnection`:
`send` (str: text frame, bytes: binary frame), `recv` (text as str, binary as bytes), `close`
(idempotent, bounded by `close_timeout`), `state`; a closed connection raises the protocol's
`ConnectionClosedOK` / `ConnectionClosedError` carrying the close frames exchanged.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from collections.abc import Mapping
from typing import cast

from websockets.asyncio.client import connect_http_proxy
from websockets.client import ClientProtocol
from websockets.exceptions import ConcurrencyError, InvalidMessage, ProxyError
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN, State
from websockets.proxy import Proxy, parse_proxy
from websockets.uri import WebSocketURI, parse_uri

from app.relay.fast_lane import MessageSink
from app.relay.wire import BINARY, TEXT, FrameReader, at_frame_boundary, client_frame

# Received messages held before reading from the socket pauses (the asyncio client's
# default `max_queue`); reading resumes once the reader has taken the deque down to a quarter.
MAX_QUEUE = 16
# The transport's write buffer above which `send` waits (the asyncio client's `write_limit`).
WRITE_LIMIT = 32 * 1024


class LeanConnection(asyncio.Protocol):
    """One upstream WebSocket. Open it with `LeanConnection.open`."""

    __slots__ = (
        "_close_timeout",
        "_close_timer",
        "_drain_waiters",
        "_fragments",
        "_fragments_text",
        "_handshake",
        "_loop",
        "_lost",
        "_lost_exc",
        "_messages",
        "_open",
        "_ping_interval",
        "_ping_payload",
        "_ping_sent_at",
        "_ping_timeout",
        "_ping_timer",
        "_plain",
        "_protocol",
        "_reader",
        "_reading_paused",
        "_recv_waiter",
        "_sink",
        "_transport",
        "_write_paused",
    )

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._protocol = protocol
        self._transport: asyncio.Transport | None = None
        # Messages that arrived while nobody waited in recv; made on first use (an empty deque
        # is 760 bytes, and a reader that keeps up never needs one).
        self._messages: deque[str | bytes] | None = None
        # The reader waiting in recv; a message is handed to it directly.
        self._recv_waiter: asyncio.Future[str | bytes | None] | None = None
        self._fragments: list[bytes] | None = None  # parts of a fragmented message, if any
        self._fragments_text = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._handshake: asyncio.Future[None] | None = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._lost_exc: BaseException | None = None
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None  # the keepalive ping awaiting its pong
        self._ping_sent_at = 0.0
        self._close_timeout = close_timeout
        self._close_timer: asyncio.TimerHandle | None = None
        self._sink: MessageSink | None = None
        self._plain = False  # no extension negotiated: frames may be built by hand
        self._open = False  # the protocol's state is OPEN (read at every _flush: it is cheaper)
        self._reader: FrameReader | None = None  # reads simple frames after the handshake

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        compression: bool,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_size: int | None,
        user_agent: str,
        proxy: str | None = None,
    ) -> LeanConnection:
        """Connect and complete the opening handshake (the caller bounds the time it takes).

        `proxy` is the URL of an HTTP(S) proxy to tunnel through (what
        `websockets.proxy.get_proxy` finds in `HTTPS_PROXY` and the like); TLS to the upstream
        then runs inside the tunnel, verified as without one.

        Raises what `websockets.asyncio.client.connect` raises: `OSError` (including
        `ssl.SSLError` and `socket.gaierror`) when TCP or TLS fails, `InvalidStatus` when the
        upgrade is refused with an HTTP status, another `InvalidHandshake` when the answer is
        not a WebSocket handshake (`ProxyError` and its kinds when the proxy is the trouble).
        """
        uri = parse_uri(url)
        extensions = enable_client_permessage_deflate(None) if compression else None
        protocol = ClientProtocol(uri, extensions=extensions, max_size=max_size)
        request = protocol.connect()
        request.headers["User-Agent"] = user_agent
        for name, value in headers.items():
            request.headers[name] = value
        protocol.send_request(request)
        connection = cls(
            protocol,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
        )
        loop = connection._loop
        tls = ssl_context if uri.secure else None
        handshake = connection._handshake
        assert handshake is not None
        try:
            if proxy is None:
                await loop.create_connection(
                    lambda: connection,
                    uri.host,
                    uri.port,
                    ssl=tls,
                    server_hostname=uri.host if uri.secure else None,
                )
            else:
                await _through_proxy(connection, parse_proxy(proxy), uri, tls, user_agent)
            await handshake
        except BaseException:
            # Nobody will read a failure that comes later: through a proxy, a TLS failure
            # inside the tunnel still reaches connection_lost, which would fail the future.
            handshake.cancel()
            connection.abort()
            raise
        connection._handshake = None
        connection._plain = not protocol.extensions
        if connection._ping_interval is not None:
            connection._ping_timer = loop.call_later(connection._ping_interval, connection._ping)
        return connection

    # --- what the session uses ----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._protocol.state

    async def send(self, message: str | bytes) -> None:
        """Send one message: a str as a text frame, bytes as a binary frame.

        Returns once the frame is in the transport's buffer; waits while that buffer is over
        `WRITE_LIMIT` (a slow upstream back-pressures the caller). Raises `ConnectionClosed`
        when the connection is closing or closed.
        """
        protocol = self._protocol
        if protocol.state is not OPEN:
            await self._raise_closed()
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(message)
        self._flush()
        if self._write_paused:
            waiter = self._loop.create_future()
            waiters = self._drain_waiters
            if waiters is None:
                waiters = self._drain_waiters = []
            waiters.append(waiter)
            try:
                await waiter
            finally:
                waiters.remove(waiter)

    async def recv(self) -> str | bytes:
        """The next message: a text frame as str, a binary frame as bytes.

        Raises `ConnectionClosed` once the connection is closed and every message received
        before the close has been read.
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._reading_paused and len(messages) <= MAX_QUEUE // 4:
                self._reading_paused = False
                if self._transport is not None and not self._lost.done():
                    self._transport.resume_reading()
            return message
        if self._lost.done():
            raise self._protocol.close_exc from self._lost_exc
        if self._recv_waiter is not None:
            raise ConcurrencyError("recv is already running")
        waiter: asyncio.Future[str | bytes | None] = self._loop.create_future()
        self._recv_waiter = waiter
        try:
            received = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:
                    # Handed over just before the cancellation: keep it for the next recv,
                    # as the asyncio client does (cancelling recv loses no message).
                    self._queue().appendleft(handed)
            raise
        finally:
            self._recv_waiter = None
        if received is None:  # woken by the connection's end
            raise self._protocol.close_exc from self._lost_exc
        return received

    # --- the fast lane (app/relay/fast_lane.py) ----------------------------------------------

    @property
    def writable_now(self) -> bool:
        """`send_now` would write at once: open, not backed up, no extension in the way."""
        return self._open and self._plain and not self._write_paused

    def send_now(self, message: str | bytes) -> int:
        """`send`, for a caller that checked `writable_now`: the frame goes to the transport
        now, masked with a pooled key (`app.relay.wire`)."""
        transport = self._transport
        assert transport is not None
        if isinstance(message, str):
            payload = message.encode()
            transport.write(client_frame(payload, TEXT))
        else:
            payload = message
            transport.write(client_frame(payload, BINARY))
        return len(payload)

    def set_sink(self, sink: MessageSink | None) -> None:
        """While a reader waits in `recv`, offer each message to `sink` first: a message it
        takes never reaches `recv`. Messages queued for `recv` are never offered, so nothing
        overtakes them."""
        self._sink = sink

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake, then wait until the TCP connection is gone.

        The peer gets `close_timeout` seconds to answer; then the connection is dropped.
        Idempotent; never raises `ConnectionClosed`.
        """
        if self._protocol.state is OPEN:
            if self._fragments is None:
                self._protocol.send_close(code, reason)
            else:  # a close in the middle of a fragmented message is an error for the peer
                self._protocol.fail(CloseCode.INTERNAL_ERROR, "close during fragmented message")
            self._flush()
        await self._wait_lost()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=WRITE_LIMIT)
        self._flush()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None and at_frame_boundary(self._protocol):
            reader = self._reader = FrameReader(self._protocol, masked=False)
        if reader is None:
            self._protocol_received(data)
        else:
            reader.feed(data, self._message_received, self._protocol_received)

    def _protocol_received(self, data: bytes) -> None:
        """Bytes the `websockets` protocol reads: the handshake, and any frame `FrameReader`
        does not read itself."""
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame_received(event)
            elif isinstance(event, Response):
                self._handshake_done()
        self._flush()

    def eof_received(self) -> None:
        if self._reader is not None:
            self._reader.flush(self._protocol_received)
        self._protocol.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()  # idempotent: the protocol is now CLOSED
        self._open = False
        if self._reader is not None:
            self._reader.release()
        self._lost_exc = exc
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._close_timer = None
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            # As the asyncio client: the protocol's own verdict (an EOF mid-response is
            # InvalidMessage), else the socket's error.
            failure = self._protocol.handshake_exc or exc
            handshake.set_exception(
                failure or InvalidMessage("did not receive a valid HTTP response")
            )
        self._lost.set_result(None)
        self._wake_reader()
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)  # the next send raises ConnectionClosed

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # --- internals ------------------------------------------------------------------------------

    def _handshake_done(self) -> None:
        handshake = self._handshake
        if handshake is None or handshake.done():
            return
        if self._protocol.handshake_exc is not None:
            handshake.set_exception(self._protocol.handshake_exc)
        else:
            handshake.set_result(None)

    def _frame_received(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            self._pong_received(frame.data)
            return
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [bytes(frame.data)]
                self._fragments_text = opcode is Opcode.TEXT
                return
            data = bytes(frame.data)
            text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(self._fragments)
            text = self._fragments_text
            self._fragments = None
        else:  # ping and close are answered by the protocol itself
            return
        self._message_received(TEXT if text else BINARY, data)

    def _message_received(self, opcode: int, data: bytes) -> None:
        """A whole message: to the fast lane's sink, the waiting reader, or the queue."""
        message: str | bytes = data
        if opcode == TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                self._protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                self._flush()
                return
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            sink = self._sink
            if sink is None or not sink(message):
                waiter.set_result(message)
            return
        messages = self._queue()
        messages.append(message)
        if not self._reading_paused and len(messages) >= MAX_QUEUE:
            self._reading_paused = True
            if self._transport is not None:
                self._transport.pause_reading()

    def _queue(self) -> deque[str | bytes]:
        if self._messages is None:
            self._messages = deque()
        return self._messages

    def _wake_reader(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        # Every change of the protocol's state (a close sent or received, a failure, the
        # handshake) comes from a call that is followed by this one.
        protocol = self._protocol
        self._open = protocol.state is OPEN
        transport = self._transport
        if transport is None:
            return
        for data in protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._close_timer is None and protocol.close_expected() and not self._lost.done():
            # The closing handshake has started (either side) or the protocol failed the
            # connection: the peer gets `close_timeout` to end it, then it is dropped.
            self._close_timer = self._loop.call_later(self._close_timeout, transport.abort)

    async def _wait_lost(self) -> None:
        if self._lost.done():
            return
        if self._close_timer is None:  # closing without a handshake in flight: drop it now
            self.abort()
        await asyncio.shield(self._lost)

    async def _raise_closed(self) -> None:
        """Wait (bounded by the close timer) until the connection is closed, then raise the
        `ConnectionClosed` carrying the close frames, as the asyncio client does."""
        await self._wait_lost()
        raise self._protocol.close_exc from self._lost_exc

    # --- keepalive ------------------------------------------------------------------------------

    def _ping(self) -> None:
        """Send a keepalive ping; without its pong within `ping_timeout`, fail the connection."""
        self._ping_timer = None
        if self._protocol.state is not OPEN:
            return
        payload = os.urandom(4)
        self._ping_payload = payload
        self._ping_sent_at = self._loop.time()
        self._protocol.send_ping(payload)
        self._flush()
        if self._ping_timeout is not None:
            self._ping_timer = self._loop.call_later(self._ping_timeout, self._ping_timed_out)

    def _pong_received(self, data: bytes | bytearray | memoryview) -> None:
        if self._ping_payload is None or bytes(data) != self._ping_payload:
            return  # an unsolicited pong
        self._ping_payload = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        interval = self._ping_interval
        if interval is not None and self._protocol.state is OPEN:
            latency = self._loop.time() - self._ping_sent_at
            self._ping_timer = self._loop.call_later(max(interval - latency, 0.0), self._ping)

    def _ping_timed_out(self) -> None:
        self._ping_timer = None
        if self._protocol.state is not OPEN:
            return
        self._protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush()


async def _through_proxy(
    connection: LeanConnection,
    proxy: Proxy,
    uri: WebSocketURI,
    tls: ssl.SSLContext | None,
    user_agent: str,
) -> None:
    """Open `connection` through an HTTP(S) proxy, as `websockets.asyncio.client.connect`
    does: an HTTP CONNECT tunnel, then TLS to the upstream inside it."""
    if not proxy.scheme.startswith("http"):
        # websockets reaches SOCKS proxies through python-socks, not a dependency here.
        raise ProxyError(f"{proxy.scheme} proxies are not supported: use an HTTP(S) proxy")
    tunnel = await connect_http_proxy(
        proxy, uri, user_agent_header=user_agent, ssl=True if proxy.scheme == "https" else None
    )
    try:
        tunnel.set_protocol(connection)
        if tls is not None:
            secured = await connection._loop.start_tls(
                tunnel, connection, tls, server_hostname=uri.host
            )
            assert secured is not None  # None only for a transport that is closing
            tunnel = secured
    except BaseException:
        tunnel.abort()
        raise
    connection.connection_made(tunnel)
