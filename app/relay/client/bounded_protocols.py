"""uvicorn's HTTP and WebSocket protocols with every wait on a client bounded.

uvicorn (httptools + websockets-sansio) trusts its clients in ways a public relay cannot:

- the HTTP parser accumulates the URL and headers without a limit, and arms its keep-alive
  timer only after a first response, so a half-sent request holds a socket forever (slowloris);
- the WebSocket protocol's `send()` waits for the socket to become writable with no deadline,
  and its close timeout starts only once the close frame is written: a client that stops reading
  pins the session, its quota slot and its upstream connection until TCP gives up;
- `transport.close()` flushes what is buffered first, however long that takes.

The subclasses here bound each of those the way nginx and Envoy do (`client_header_timeout`,
`large_client_header_buffers`, `send_timeout`, lingering close), and are passed to uvicorn
through `uvicorn.Config(http=..., ws=...)` (see `app.serve.uvicorn_config`). Their limits travel
in `RelayUvicornConfig.connection_limits`, which survives the pickling uvicorn does to start
worker processes.

What they refuse and abort is counted on the app's `RelayMetrics`, which the app's lifespan hands
them in the ASGI lifespan state (`METRICS_STATE`): uvicorn gives every protocol it builds that
state, in each worker process, so multiprocess metrics need nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.protocol import OPEN

from app.metrics import RelayMetrics
from app.relay.client.handshake_pacing import Turn, pacer_for
from app.relay.client.input_budget import SHED_CODE, InputBudget, InputHolder
from app.relay.client.receive_queue import ReceiveQueue
from app.relay.fast_lane import Lane, MessageSink
from app.relay.wire import BINARY, TEXT, FrameReader, at_frame_boundary, server_frame
from app.settings import Settings
from app.web import error_body

logger = logging.getLogger(__name__)

KiB = 1024

# nginx's `large_client_header_buffers 4 8k`: a request line or a header line over 8 KiB, or a
# header section over 32 KiB, is refused. websockets refuses lines over 8 KiB and more than 128
# headers; staying within both means the WebSocket handshake never meets a second, silent limit.
MAX_REQUEST_LINE_BYTES = 8 * KiB
MAX_HEADER_LINE_BYTES = 8 * KiB
MAX_HEADER_SECTION_BYTES = 32 * KiB
MAX_HEADERS = 100  # Envoy's default `max_headers_count`
# `GET ` + ` HTTP/1.1\r\n` around the URL on the request line uvicorn rebuilds for websockets.
_REQUEST_LINE_FRAME = len("GET ") + len(" HTTP/1.1\r\n")

# A close frame waits this long for a client that has stopped reading to make room for it;
# then the connection is aborted: the client was not going to read the close frame either.
CLOSE_WRITE_GRACE_SECONDS = 0.5
# After the relay closes (close frame sent, response written), the client has this long to
# answer and read what is buffered; then the socket is aborted (nginx's lingering timeout).
CLOSE_TIMEOUT_SECONDS = 3.0

# A text frame that is not UTF-8 (RFC 6455 section 8.1): closed with this code and reason.
INVALID_UTF8_CODE = 1007
INVALID_UTF8_REASON = "Text frame is not valid UTF-8."

# The ASGI scope extension through which the endpoint tells the protocol a session is admitted.
ADMISSION_EXTENSION = "live-relay.admission"

# The lifespan-state keys under which the app's lifespan gives these protocols its metrics and
# the process's budget for client input held in memory (app/relay/client/input_budget.py).
METRICS_STATE = "live-relay.metrics"
INPUT_BUDGET_STATE = "live-relay.input-budget"

# The `reason` of relay_connections_refused_total for each HTTP refusal.
_REFUSAL_REASONS = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "headers_too_large",
    503: "handshakes_waiting",
}


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how much a client may make the relay wait or hold, per connection."""

    request_timeout_seconds: float
    send_timeout_seconds: float
    pre_admission_frame_bytes: int
    admitted_frame_bytes: int
    handshake_concurrency: int = 0  # 0: upgrades are not paced
    close_timeout_seconds: float = CLOSE_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            request_timeout_seconds=settings.request_timeout_seconds,
            send_timeout_seconds=settings.client_send_timeout_seconds,
            pre_admission_frame_bytes=settings.max_setup_frame_bytes,
            admitted_frame_bytes=settings.max_frame_bytes,
            handshake_concurrency=settings.handshake_concurrency,
        )


class RelayUvicornConfig(uvicorn.Config):
    """uvicorn's configuration, carrying the relay's per-connection limits to its protocols.

    The protocols build on httptools and websockets-sansio, measured the cheapest per frame of
    uvicorn's implementations (see the performance docs); the bounds add no per-frame work.
    """

    def __init__(self, app: Any, *, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=BoundedHttpProtocol, ws=BoundedWebSocketProtocol, **kwargs)
        self.connection_limits = connection_limits


def _limits_of(config: uvicorn.Config) -> ConnectionLimits:
    if isinstance(config, RelayUvicornConfig):
        return config.connection_limits
    return ConnectionLimits.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


def _metrics_of(app_state: dict[str, Any]) -> RelayMetrics | None:
    """The app's metrics; None when its lifespan did not run (uvicorn with `lifespan="off"`)."""
    metrics = app_state.get(METRICS_STATE)
    return metrics if isinstance(metrics, RelayMetrics) else None


def _input_budget_of(app_state: dict[str, Any]) -> InputBudget | None:
    budget = app_state.get(INPUT_BUDGET_STATE)
    return budget if isinstance(budget, InputBudget) else None


def _count_refusal(metrics: RelayMetrics | None, status: int) -> None:
    if metrics is not None:
        metrics.record_refusal(_REFUSAL_REASONS.get(status, "bad_request"))


def http_error(status: int, phrase: str, message: str) -> bytes:
    """A complete `Connection: close` HTTP answer in the relay's JSON error shape."""
    body = json.dumps(error_body(status, message)).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is being refused
    (httptools turns it into an `HttpParserError` out of `feed_data`)."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """httptools with a deadline for each whole request and limits on its head.

    The request timer runs from the connection (or the next request's first byte on a kept-alive
    connection, which uvicorn's keep-alive timer reaps until then) until the request, body
    included, has arrived; a WebSocket upgrade request is complete at the end of its headers.
    Oversized heads are answered 414/431 at once and the socket is closed. An upgrade request
    waits its turn (`handshake_pacing`) before the WebSocket handshake starts.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = _limits_of(config)
        self.metrics = _metrics_of(self.app_state)
        self._request_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = False
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._turn: Turn | None = None  # an upgrade waiting for its turn

    # --- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self._turn is not None:
            self._turn.done()  # gave up waiting: its place goes to the next
            self._turn = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._request_timer is None and self._between_requests():
            self._arm_request_timer()  # the next request on a kept-alive connection begins
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._cancel_request_timer()
            if self._should_upgrade():
                self._upgrade_in_turn()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:
                self._refuse(400, "Bad Request", "the request is not valid HTTP/1.1")
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_LINE_BYTES + MAX_HEADER_SECTION_BYTES:
                # A single line still unterminated inside httptools' own buffer.
                if self._header_count == 0 and len(self.url) + _REQUEST_LINE_FRAME > (
                    MAX_REQUEST_LINE_BYTES
                ):
                    self._refuse_uri_too_long()
                else:
                    self._refuse_headers_too_large("the request head is too large")

    # --- upgrades, paced ------------------------------------------------------------------

    def _upgrade_in_turn(self) -> None:
        limit = self.limits.handshake_concurrency
        if limit == 0:
            self.handle_websocket_upgrade()
            return
        pacer = pacer_for(self.server_state, limit, self.limits.request_timeout_seconds)
        turn = pacer.take_turn(self._turn_came, self._turn_timed_out)
        if turn is None:
            self._refuse(503, "Service Unavailable", "too many handshakes waiting: retry")
        elif turn.state == "running":
            self._upgrade(turn)
        else:
            self._turn = turn
            self.transport.pause_reading()  # nothing is due before the 101 anyway

    def _turn_came(self) -> None:
        turn, self._turn = self._turn, None
        assert turn is not None
        self.transport.resume_reading()
        self._upgrade(turn)

    def _turn_timed_out(self) -> None:
        self._turn = None
        seconds = self.limits.request_timeout_seconds
        why = f"the relay is busy: no handshake turn within {seconds:g}s, retry"
        self._refuse(503, "Service Unavailable", why)

    def _upgrade(self, turn: Turn) -> None:
        self.handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, BoundedWebSocketProtocol):
            protocol.hold_turn(turn)
        else:
            turn.done()

    def _between_requests(self) -> bool:
        return not self._in_head and (self.cycle is None or self.cycle.response_complete)

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._header_count = self._header_bytes = 0
        if self._request_timer is None:
            self._arm_request_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) + _REQUEST_LINE_FRAME > MAX_REQUEST_LINE_BYTES:
            self._refuse_uri_too_long()
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 4  # `name: value\r\n`
        self._header_count += 1
        self._header_bytes += line
        if line > MAX_HEADER_LINE_BYTES:
            self._refuse_headers_too_large(f"a header line is over {MAX_HEADER_LINE_BYTES} bytes")
            raise _Refused
        if self._header_count > MAX_HEADERS:
            self._refuse_headers_too_large(f"more than {MAX_HEADERS} header lines")
            raise _Refused
        if self._header_bytes > MAX_HEADER_SECTION_BYTES:
            self._refuse_headers_too_large(f"headers over {MAX_HEADER_SECTION_BYTES} bytes")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        super().on_message_complete()

    # --- refusals -------------------------------------------------------------------------

    def _refuse_uri_too_long(self) -> None:
        why = f"the request line is over {MAX_REQUEST_LINE_BYTES} bytes"
        self._refuse(414, "URI Too Long", why)

    def _refuse_headers_too_large(self, why: str) -> None:
        self._refuse(431, "Request Header Fields Too Large", why)

    def _refuse(self, status: int, phrase: str, why: str) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancel_request_timer()
        logger.info("HTTP request refused (%d): %s", status, why)
        _count_refusal(self.metrics, status)
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(http_error(status, phrase, why))
        self._close_then_abort()

    def _close_then_abort(self) -> None:
        self.transport.close()
        if self._abort_timer is None:
            self._abort_timer = self.loop.call_later(
                self.limits.close_timeout_seconds, self._close_timed_out
            )

    def _close_timed_out(self) -> None:
        """The refused client neither read its answer nor closed: drop it."""
        self._abort_timer = None
        if self.metrics is not None:
            self.metrics.record_client_abort("close_timeout")
        self.transport.abort()

    # --- request deadline -----------------------------------------------------------------

    def _arm_request_timer(self) -> None:
        self._request_timer = self.loop.call_later(
            self.limits.request_timeout_seconds, self._request_timed_out
        )

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        seconds = self.limits.request_timeout_seconds
        self._refuse(408, "Request Timeout", f"the request did not arrive within {seconds:g}s")


@dataclass(frozen=True)
class _Admission:
    """What the endpoint calls as a session is set up: `answered` once the client has its 101
    (the handshake's turn goes to the next upgrade waiting), `admit` once its quota slot is
    taken (full-size frames from then on)."""

    answered: Callable[[], None]
    admit: Callable[[], None]
    lane: Lane  # the connection's fast lane (app/relay/fast_lane.py)
    held_input: InputHolder | None  # its account with the process's input budget


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """websockets-sansio with a deadline on every write and on every close.

    - Writes: when the transport's buffer crosses its high-water mark (`pause_writing`), a
      timer starts; if the client has not drained it within `send_timeout_seconds`, the
      connection is aborted and the application sees a disconnect saying why.
    - Closes: a close frame waits at most `CLOSE_WRITE_GRACE_SECONDS` for room in the buffer,
      and every closing connection is aborted `close_timeout_seconds` after it began closing.
    - Frames: until the endpoint admits the session, frames are limited to the setup size
      (`pre_admission_frame_bytes`), so memory is bounded before any quota is charged.
    - Input held: a partly received frame or message is charged to the process's
      `InputBudget`; a connection it sheds lets go of it, reads no more and is closed 1013.
    - Handshakes websockets refuses (414/431, or unreadable) are answered and closed.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        # What uvicorn uses of its asyncio.Queue, 3 KB lighter (app/relay/client/receive_queue.py).
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.limits = _limits_of(config)
        self.metrics = _metrics_of(self.app_state)
        self.close_timeout = self.limits.close_timeout_seconds
        self.conn.max_message_size = self.limits.pre_admission_frame_bytes
        self._send_deadline: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._aborted = False  # counted once, whichever timer or deadline came first
        self._turn: Turn | None = None  # the handshake's turn, until the session is set up
        self._sink: MessageSink | None = None  # the fast lane's, while a session runs
        self._plain = False  # admitted, and no extension: frames may be built by hand
        self._reader: FrameReader | None = None  # reads simple frames after the handshake
        budget = _input_budget_of(self.app_state)
        self._input = None if budget is None else InputHolder(budget, self)
        self._fragments_held = 0  # bytes of a fragmented message not yet whole
        self._input_shed = False  # shed at the input budget: reads nothing more

    # --- admission ------------------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.close_sent:  # websockets refused the handshake itself and uvicorn answered
            _count_refusal(self.metrics, self.response.status_code)
            self._abort_later()
            return
        admission = _Admission(self._end_turn, self._admit, self, self._input)
        self.scope["extensions"][ADMISSION_EXTENSION] = {"admission": admission}

    def _admit(self) -> None:
        self.conn.max_message_size = self.limits.admitted_frame_bytes
        self._plain = not self.conn.extensions

    # --- the fast lane (app/relay/fast_lane.py) -------------------------------------------

    @property
    def writable_now(self) -> bool:
        """A frame written now goes out as the session's next: the connection is open, the
        relay has not closed it, and its write buffer is under the high-water mark (above
        it, the generic path waits, under the send deadline)."""
        return (
            self._plain
            and self.writable.is_set()
            and not self.close_sent
            and self.conn.state is OPEN
        )

    def send_now(self, message: str | bytes) -> int:
        if isinstance(message, str):
            payload = message.encode()
            self.transport.write(server_frame(payload, TEXT))
        else:
            payload = message
            self.transport.write(server_frame(payload, BINARY))
        return len(payload)

    def set_sink(self, sink: MessageSink | None) -> None:
        self._sink = sink

    def hold_turn(self, turn: Turn) -> None:
        """Keep the handshake's turn until the client is answered or the connection ends."""
        if self.close_sent or self.disconnected:  # the handshake was refused already
            turn.done()
        else:
            self._turn = turn

    def _end_turn(self) -> None:
        if self._turn is not None:
            self._turn.done()
            self._turn = None

    # --- frames ---------------------------------------------------------------------------

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, with two changes. A text frame that is not UTF-8 is the client's error, so
        it is closed 1007 with a reason and logged at INFO, where uvicorn logs an ERROR
        traceback (ERROR is for the relay's own faults). And a message goes to the fast lane's
        sink first when nothing is queued ahead of it; one it takes is not queued and reading
        goes on. Valid text is decoded once, as there."""
        if self._fragments_held:
            self._hold_fragments(-self._fragments_held)
        if self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        self._deliver(TEXT if self.curr_msg_data_type == "text" else BINARY, data)

    def _deliver(self, opcode: int, data: bytes) -> None:
        """A whole message, from uvicorn's reading or `FrameReader`'s: to the fast lane's sink,
        or queued for the application (reading pauses until it is taken)."""
        if self.close_sent:
            return  # as uvicorn: reads go on only until the peer's close reply
        message: str | bytes = data
        if opcode == TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                logger.info(
                    "client sent a text frame that is not UTF-8 (at byte %d): closed 1007",
                    exc.start,
                )
                self.conn.send_close(INVALID_UTF8_CODE, INVALID_UTF8_REASON)
                self.handle_parser_exception()
                return
        # Reading pauses while a message is queued, so a queued one is seldom behind; the
        # check keeps it so whatever else changes.
        sink = self._sink
        if sink is not None and self.queue.empty() and sink(message):
            return
        if isinstance(message, str):
            self.queue.put_nowait({"type": "websocket.receive", "text": message})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": message})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    # A fragmented message (rare: browsers and the SDKs send whole ones) is gathered by uvicorn
    # in `frames` until its last fragment; what it holds meanwhile is charged too.

    def handle_text(self, event: Any) -> None:
        super().handle_text(event)
        if self.frames:
            self._hold_fragments(len(event.data))

    def handle_bytes(self, event: Any) -> None:
        super().handle_bytes(event)
        if self.frames:
            self._hold_fragments(len(event.data))

    def handle_cont(self, event: Any) -> None:
        super().handle_cont(event)
        if self.frames:
            self._hold_fragments(len(event.data))

    def _hold_fragments(self, size: int) -> None:
        self._fragments_held += size
        if self._input is not None:
            self._input.charge(size)

    # --- the input budget (app/relay/client/input_budget.py) --------------------------------

    def release_input(self) -> None:
        """Shed: let go of every byte held for the client, now, and read nothing more (its
        close reply included: the close timeout ends the connection)."""
        self._input_shed = True
        if self._reader is not None:
            self._reader.release()
        self.frames = []
        self._fragments_held = 0
        self.conn.reader.buffer.clear()
        if not self.disconnected:
            self.transport.pause_reading()

    def close_for_input(self, reason: str) -> None:
        """Shed while no session runs here: the protocol closes the connection itself."""
        if self.disconnected or self.close_sent:
            return
        if not self.handshake_complete or self.conn.state is not OPEN:
            self._close_then_abort()  # not answered yet, or closing: only the socket is left
            return
        self.conn.send_close(SHED_CODE, reason)
        self.handle_parser_exception()

    # --- reading, and handshake refusals ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._input_shed:
            return
        reader = self._reader
        if reader is None and self.handshake_initiated and at_frame_boundary(self.conn):
            reader = self._reader = FrameReader(self.conn, masked=True, holder=self._input)
        if reader is None:
            self._protocol_received(data)
        else:
            reader.feed(data, self._deliver, self._protocol_received)

    def _protocol_received(self, data: bytes) -> None:
        """Bytes uvicorn's protocol reads: the handshake, and frames `FrameReader` leaves."""
        super().data_received(data)
        refused = self.conn.handshake_exc is not None and not self.close_sent
        if refused and not self.handshake_initiated:  # answered and counted once
            # websockets built the answer (414, 431) or none (garbage): send it and close.
            _count_refusal(self.metrics, _handshake_status(self.conn.handshake_exc))
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self._close_then_abort()

    # --- writes ---------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.limits.send_timeout_seconds, self._send_timed_out
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _send_timed_out(self) -> None:
        self._send_deadline = None
        seconds = self.limits.send_timeout_seconds
        self._abort("send_timeout", f"client did not read for {seconds:g}s (send timeout)")

    def _abort(self, reason: str, why: str) -> None:
        """Drop the connection now; the application learns why from its disconnect event.
        `reason` is the word counted in relay_client_aborts_total."""
        if self.disconnected or self._aborted:
            return
        self._aborted = True
        logger.info("client connection aborted: %s", why)
        if self.metrics is not None:
            self.metrics.record_client_abort(reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006, "reason": why})
        self.transport.abort()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != "websocket.close":
            if self.close_sent and self.handshake_complete and not self.disconnected:
                # uvicorn closed the connection itself (an oversized frame, a keepalive
                # timeout) and queued the disconnect: a frame sent after that is a leg that
                # ended, said the way every other end of the client leg is said, not
                # uvicorn's RuntimeError.
                raise WebSocketDisconnect(*_close_sent(self.conn))
            await super().send(message)  # frames: bounded by the write deadline
            if message["type"] == "websocket.accept" and self.handshake_complete:
                # uvicorn keeps the handshake's request and response, headers and all (3 KB
                # of a held session), and never reads them once the response is sent; the
                # scope has its own copy of the request headers.
                del self.request, self.response
            return
        if self.handshake_complete and not self.close_sent and not self.writable.is_set():
            try:
                async with asyncio.timeout(CLOSE_WRITE_GRACE_SECONDS):
                    await self.writable.wait()
            except TimeoutError:
                self._abort("close_blocked", "client not reading when the relay closed the session")
                return
        await super().send(message)
        if self.close_timer is not None:
            # uvicorn's timer calls transport.close(), which waits for the buffer to drain.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    # --- closes ---------------------------------------------------------------------------

    def _close_then_abort(self) -> None:
        self.transport.close()
        self._abort_later()

    def _abort_later(self) -> None:
        if self._abort_timer is None and not self.disconnected:
            self._abort_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        """The connection began closing `close_timeout` ago and is still open: drop it.
        Both uvicorn's close timer and `_abort_later`'s may be armed; the first one counts."""
        if self.disconnected or self._aborted:
            return
        self._aborted = True
        if self.metrics is not None:
            self.metrics.record_client_abort("close_timeout")
        self.transport.abort()

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        self._abort_later()

    def handle_parser_exception(self) -> None:
        super().handle_parser_exception()
        self._abort_later()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._abort_later()

    def shutdown(self) -> None:
        super().shutdown()
        self._abort_later()

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._end_turn()  # refused, or over before it was answered
        self._abort_later()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._send_deadline, self._abort_timer):
            if timer is not None:
                timer.cancel()
        self._send_deadline = self._abort_timer = None
        self._end_turn()
        super().connection_lost(exc)
        # The protocol and its parser form a reference cycle, freed only by a full garbage
        # collection, which may be minutes away: without this, each closed connection kept its
        # partly received frame (up to the setup cap) resident until then.
        self.conn.reader.buffer.clear()
        self.frames = []
        if self._reader is not None:
            self._reader.release()
        if self._input is not None:
            self._input.clear()


def _handshake_status(refusal: Exception | None) -> int:
    """The HTTP status websockets answers a handshake it could not parse with (none: 400)."""
    if isinstance(refusal, RequestLineTooLong):
        return 414
    if isinstance(refusal, HeaderLineTooLong | TooManyHeaders):
        return 431
    return 400


def _admission(websocket: WebSocket) -> _Admission | None:
    """None when the server is not the relay's uvicorn (e.g. a test client)."""
    extension = websocket.scope.get("extensions", {}).get(ADMISSION_EXTENSION)
    return None if extension is None else extension["admission"]


def held_input(websocket: WebSocket) -> InputHolder | None:
    """The client connection's account with the input budget; None when the server is not the
    relay's uvicorn, or runs without the app's lifespan."""
    admission = _admission(websocket)
    return None if admission is None else admission.held_input


def client_lane(websocket: WebSocket) -> Lane | None:
    """The client connection's fast lane; None when the server is not the relay's uvicorn."""
    admission = _admission(websocket)
    return None if admission is None else admission.lane


def admit_full_frames(websocket: WebSocket) -> None:
    """Raise the client's frame limit from the setup size to the session size."""
    admission = _admission(websocket)
    if admission is not None:
        admission.admit()


def handshake_done(websocket: WebSocket) -> None:
    """The client is answered: the next paced handshake may start."""
    admission = _admission(websocket)
    if admission is not None:
        admission.answered()


def _close_sent(conn: Any) -> tuple[int, str]:
    """The code and reason of the close frame a websockets connection sent (1006: none)."""
    sent = conn.close_sent
    return (sent.code, sent.reason) if sent is not None else (1006, "")
