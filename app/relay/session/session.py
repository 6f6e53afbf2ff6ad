"""One live session: two pumps joining a client WebSocket to an upstream connection.

The pumps forward frames untouched, but for the client frames the session's policy rewrites
or refuses (`client_frames.py`). Whatever ends the session first (either leg closing, a
timer, a drain, the token budget, an error) calls `end()` once; `run()` then stops both pumps and
sends each leg the close it is owed (see `Ending`). Nothing here is done per frame that could be
done per session: counters are plain integers, timers are loop callbacks, usage is parsed only
from frames that carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from app.logs import session_id_var
from app.protocol.errors import ProtocolViolation
from app.relay.client.client_frames import ClientFrames
from app.relay.client.input_budget import SHED_CODE, InputHolder
from app.relay.closes import (
    GOING_AWAY,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Ending,
)
from app.relay.fast_lane import Lane, lane_of
from app.relay.sniff import (
    GOAWAY_KEY,
    SETUP_COMPLETE_KEY,
    TURN_COMPLETE_KEY,
    USAGE_KEY,
    Usage,
    read_usage,
)
from app.relay.upstream.upstream_leg import UpstreamLeg, UpstreamSwitchFailed, close_in_background

logger = logging.getLogger(__name__)

# Called with each usage report; returns a refusal reason when the project is over budget.
UsageHook = Callable[[Usage], Awaitable[str | None]]


@dataclass(frozen=True)
class SessionLimits:
    max_seconds: float
    goaway_notice_seconds: float
    idle_seconds: float
    max_frame_bytes: int
    setup_complete_seconds: float
    frames_per_second: int | None = None
    bytes_per_second: int | None = None


@dataclass(slots=True)
class Traffic:
    """Counters of one session. Plain ints: the hot path must not take locks or call metrics."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    prompt_tokens: int = 0
    response_tokens: int = 0
    goaways_from_upstream: int = 0
    # Of frames_in and frames_out, those that took the fast lane (app/relay/fast_lane.py).
    fast_in: int = 0
    fast_out: int = 0


# The sniffed keys as str, to look into a text frame without encoding it.
_USAGE_TEXT = USAGE_KEY.decode()
_GOAWAY_TEXT = GOAWAY_KEY.decode()

# What a frame held back until setupComplete costs beyond its payload: the str or bytes object
# and its slot in the list. Held frames are charged this too, or 8 MiB of 2-byte frames would
# hold some 30 times that in memory.
HELD_FRAME_OVERHEAD_BYTES = 64


def upstream_ended(closed: ConnectionClosed) -> Ending:
    """The upstream leg's end, whichever call saw it (a recv, a send): one value."""
    received = closed.rcvd
    if received is None:
        return Ending("upstream", 1006, "", "upstream_lost")
    return Ending("upstream", received.code, received.reason, "upstream_closed")


def client_ended(code: int | None, reason: str | None) -> Ending:
    """The client leg's end, whichever call saw it: a disconnect message from a receive, or a
    WebSocketDisconnect from a send (the bounded protocol turns a send after uvicorn's own
    close into one, with the code uvicorn sent)."""
    return Ending("client", code or 1005, reason or "", "client_closed")


def _outgoing(frame: str | bytes) -> tuple[bytes, Message]:
    """An upstream frame as bytes to sniff, and the ASGI message that forwards it unchanged:
    binary stays binary, text stays text."""
    if isinstance(frame, bytes):
        return frame, {"type": "websocket.send", "bytes": frame}
    return frame.encode(), {"type": "websocket.send", "text": frame}


class _UpstreamStalled(Exception):
    """The upstream accepted the connection but never answered the setup."""


def goaway_frame(seconds: float) -> bytes:
    """A Live API goAway; `timeLeft` is a proto Duration string such as "60s" or "0.5s"."""
    left = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return json.dumps({"goAway": {"timeLeft": f"{left}s"}}).encode()


@dataclass(slots=True)
class _RateWindow:
    """Frames and bytes from the client in the current one-second window."""

    started: float = 0.0
    frames: int = 0
    size: int = 0


@dataclass(eq=False)  # identity semantics: sessions are set members and dict keys
class Session:
    client: WebSocket
    upstream: UpstreamLeg
    setup_frame: str | bytes
    limits: SessionLimits
    on_usage: UsageHook
    frames: ClientFrames  # what each client frame may be, and what of it goes upstream
    # The client connection's fast lane (app/relay/fast_lane.py); None: the generic path only.
    client_lane: Lane | None = None
    # The client connection's account with the process's input budget: frames held for
    # setupComplete are charged to it, and a shed ends the session (input_budget.py).
    held_input: InputHolder | None = None
    traffic: Traffic = field(default_factory=Traffic)
    started_at: float = field(default_factory=time.time)
    ending: Ending | None = None
    goaways_sent: list[str] = field(default_factory=list)  # why each relay goAway was sent

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[Ending] = self._loop.create_future()
        self._ready = False  # upstream sent setupComplete; until then client frames wait in order
        self._queued: list[str | bytes] = []
        # Bytes waiting for setupComplete: held in memory, so bounded by one largest frame.
        self._queued_bytes = 0
        if self.held_input is not None:
            self.held_input.close = self._shed
            self.held_input.session = session_id_var.get()
        # One loop timer serves the time limit's goAway and end and the idle check: each
        # TimerHandle is about 500 bytes of a held session (tests/bench/session_memory.py).
        self._timer: asyncio.TimerHandle | None = None
        self._goaway_at: float | None = None  # the time limit's goAway, until it is sent
        self._end_at = 0.0
        self._idle_check_at = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._last_client_frame = self._loop.time()
        self._rate = _RateWindow(started=self._last_client_frame)
        self._close_after_turn: str | None = None
        self._usage_frame_index = -1
        # The task running the upstream pump inside run(), while it does. One pump runs in
        # the caller's task instead of its own: a task is ~600 bytes of a held session.
        self._runner: asyncio.Task[object] | None = None
        self._runner_stopping = False
        # The fast lane runs when both legs have one; a pump's direction takes it only while
        # that pump waits to read (nothing of that direction is in flight).
        self._client_waiting = False
        self._upstream_waiting = False
        # Mind the count: from 30 attributes on, CPython stops sharing an instance dict's keys
        # across instances and each session's dict costs 1.3 KB more (fields included).

    # --- ending ---------------------------------------------------------------------------

    def end(self, ending: Ending) -> None:
        """Ask the session to end; the first ending wins."""
        if not self._ended.done():
            self._stop_fast_lane()
            self._ended.set_result(ending)
            runner = self._runner
            if runner is not None and not self._runner_stopping:
                # The upstream pump runs in run()'s own task: stop it there.
                self._runner_stopping = True
                runner.cancel()

    def send_goaway(self, seconds: float, why: str) -> None:
        """Tell the client the session ends in `seconds` (a Live API goAway), without waiting."""
        self.goaways_sent.append(why)
        self._spawn(self._send_to_client(goaway_frame(seconds)))

    async def run(self) -> Ending:
        """Forward until something ends the session; close both legs; return why it ended."""
        limits = self.limits
        now = self._loop.time()
        self._goaway_at = now + limits.max_seconds - limits.goaway_notice_seconds
        self._end_at = now + limits.max_seconds
        self._idle_check_at = now + limits.idle_seconds
        self._arm_timer()
        client_pump = asyncio.create_task(self._pump_client(), name="client->upstream")
        client_pump.add_done_callback(self._pump_finished)
        try:
            await self._run_upstream_pump()
            self.ending = self._ended.result()
        finally:
            self._stop_fast_lane()
            self._release_queued()
            if self.held_input is not None:
                self.held_input.close = None  # the connection closes itself from now on
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for task in (client_pump, *self._background):
                task.cancel()
            await asyncio.gather(client_pump, *self._background, return_exceptions=True)
            await self._close_legs(self.ending or Ending("relay", GOING_AWAY, "cancelled", "error"))
        return self.ending

    async def _run_upstream_pump(self) -> None:
        """Run the upstream pump in this task until it ends or `end()` stops it."""
        runner = asyncio.current_task()
        assert runner is not None
        if self._ended.done():
            return
        self._runner = runner
        try:
            ending = await self._pump_upstream()
        except asyncio.CancelledError:
            self._runner = None
            # Ours (end() stopped the pump) unless the task was also cancelled from outside.
            if not self._runner_stopping or runner.uncancel() > 0:
                raise
            return
        except Exception:
            self._runner = None
            logger.exception("session pump upstream->client failed")
            self.end(Ending("relay", INTERNAL_ERROR, "internal error", "error"))
            return
        self._runner = None
        self.end(ending)

    def _pump_finished(self, task: asyncio.Task[Ending]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.end(task.result())
            return
        logger.error("session pump %s failed", task.get_name(), exc_info=error)
        self.end(Ending("relay", INTERNAL_ERROR, "internal error", "error"))

    async def _close_legs(self, ending: Ending) -> None:
        client_close = ending.client_close
        if client_close is not None:
            # A client that is already gone is owed nothing.
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.client.close(*client_close)
        upstream_close = ending.upstream_close
        if upstream_close is not None:
            # Not awaited: the slot must not wait for a backed-up upstream's close timeout.
            close_in_background(self.upstream, *upstream_close)

    # --- client -> upstream ---------------------------------------------------------------

    async def _pump_client(self) -> Ending:
        receive = self.client.receive
        send = self.upstream.send
        take = self._take_client_frame
        while True:
            self._client_waiting = True
            message = await receive()
            self._client_waiting = False
            if message["type"] != "websocket.receive":
                return client_ended(message.get("code"), message.get("reason"))
            frame: str | bytes | None = message.get("bytes")
            if frame is None:
                frame = message["text"]
            taken = take(frame)
            if taken is None:
                continue
            if isinstance(taken, Ending):
                return taken
            if self._ready:
                try:
                    await send(taken)
                except ConnectionClosed as closed:  # the upstream pump may not have seen it yet
                    return upstream_ended(closed)
                continue
            held = len(frame) + HELD_FRAME_OVERHEAD_BYTES
            self._queued_bytes += held
            if self.held_input is not None:
                self.held_input.charge(held)
            if self._queued_bytes > self.limits.max_frame_bytes:
                return Ending(
                    "relay",
                    MESSAGE_TOO_BIG,
                    f"{self._queued_bytes} bytes sent before setupComplete exceed the limit of "
                    f"{self.limits.max_frame_bytes}",
                    "frame_too_big",
                )
            self._queued.append(taken)

    def _take_client_frame(self, frame: str | bytes) -> str | bytes | Ending | None:
        """A client frame through the session's rules, on either path: what goes upstream (the
        frame or its canonical form), None for nothing, or the Ending it calls for."""
        # Live API frames are ASCII JSON (base64 media), so a text frame's length in
        # characters is its length in bytes, without encoding it again.
        size = len(frame)
        limits = self.limits
        if size > limits.max_frame_bytes:
            return Ending(
                "relay",
                MESSAGE_TOO_BIG,
                f"frame of {size} bytes exceeds the limit of {limits.max_frame_bytes}",
                "frame_too_big",
            )
        now = self._loop.time()
        self._last_client_frame = now
        traffic = self.traffic
        traffic.frames_in += 1
        traffic.bytes_in += size
        per_second = limits.frames_per_second
        if per_second is not None:  # the rate window, inline: every client frame passes here
            rate = self._rate
            if now - rate.started >= 1.0:
                rate.started, rate.frames, rate.size = now, 0, 0
            rate.frames += 1
            rate.size += size
            if rate.frames > per_second or (
                limits.bytes_per_second is not None and rate.size > limits.bytes_per_second
            ):
                return Ending("relay", POLICY_VIOLATION, self._rate_reason(), "rate_limited")
        try:
            return self.frames.admit(frame)
        except ProtocolViolation as refused:
            return Ending("relay", refused.code, refused.reason, "message_refused")

    def _rate_reason(self) -> str:
        limits = self.limits
        return (
            f"client input over the limit of {limits.frames_per_second} frames/s "
            f"or {limits.bytes_per_second} bytes/s"
        )

    def _arm_timer(self) -> None:
        due = min(self._end_at, self._idle_check_at)
        if self._goaway_at is not None:
            due = min(due, self._goaway_at)
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._ended.done():
            return
        now = self._loop.time()
        limits = self.limits
        if self._goaway_at is not None and now >= self._goaway_at:
            self._goaway_at = None
            self.send_goaway(limits.goaway_notice_seconds, "time_limit")
        if now >= self._end_at:
            self.end(Ending("relay", NORMAL, "session time limit reached", "time_limit"))
            return
        if now >= self._idle_check_at:
            idle_for = now - self._last_client_frame
            remaining = limits.idle_seconds - idle_for
            if remaining <= 0:
                seconds = round(limits.idle_seconds)
                self.end(Ending("relay", NORMAL, f"idle: no client frame for {seconds}s", "idle"))
                return
            self._idle_check_at = now + remaining
        self._arm_timer()

    # --- upstream -> client ---------------------------------------------------------------

    async def _pump_upstream(self) -> Ending:
        recv = self.upstream.recv
        send = self.client.send
        traffic = self.traffic
        try:
            await self.upstream.send(self.setup_frame)
            traffic.frames_in += 1
            traffic.bytes_in += len(self.setup_frame)  # ASCII JSON: characters are bytes
            await self._forward_setup_complete()
            self._start_fast_lane()
            while True:
                self._upstream_waiting = True
                frame = await recv()
                self._upstream_waiting = False
                probe, message = _outgoing(frame)
                traffic.frames_out += 1
                traffic.bytes_out += len(probe)
                if USAGE_KEY in probe:
                    self._account(probe)
                elif probe.find(GOAWAY_KEY, 0, 32) >= 0:  # goAway travels alone, key first
                    traffic.goaways_from_upstream += 1
                await send(message)
                if self._close_after_turn is not None and TURN_COMPLETE_KEY in probe:
                    return Ending("relay", TRY_AGAIN_LATER, self._close_after_turn, "tokens")
        except ConnectionClosed as closed:
            return upstream_ended(closed)
        except WebSocketDisconnect as gone:
            return client_ended(gone.code, gone.reason)
        except UpstreamSwitchFailed as failed:
            return Ending("relay", INTERNAL_ERROR, failed.reason, "switch_failed")
        except _UpstreamStalled:
            reason = "upstream did not complete the setup in time"
            return Ending("relay", INTERNAL_ERROR, reason, "upstream_unavailable")

    async def _forward_setup_complete(self) -> None:
        """Pass the upstream's first frame on, then release the client frames queued behind it."""
        try:
            async with asyncio.timeout(self.limits.setup_complete_seconds):
                frame = await self.upstream.recv()
        except TimeoutError:
            raise _UpstreamStalled from None
        probe, message = _outgoing(frame)
        if SETUP_COMPLETE_KEY not in probe:
            logger.warning("upstream's first frame was not setupComplete")
        self.traffic.frames_out += 1
        self.traffic.bytes_out += len(probe)
        await self.client.send(message)
        queued = self._queued
        sent = 0
        while sent < len(queued):  # the client pump may append while a frame is sent
            await self.upstream.send(queued[sent])
            sent += 1
        # No await between the last length check and this flag: the client pump cannot slip
        # a frame into the queue that would then be left behind.
        self._ready = True
        self._release_queued()

    def _release_queued(self) -> None:
        self._queued = []
        if self.held_input is not None:
            self.held_input.charge(-self._queued_bytes)
        self._queued_bytes = 0

    def _shed(self, reason: str) -> None:
        """The process's input budget shed this session's connection (input_budget.py)."""
        self.end(Ending("relay", SHED_CODE, reason, "input_shed"))

    def _account(self, frame: bytes) -> None:
        usage = read_usage(frame)
        if usage is None:
            return
        self.traffic.prompt_tokens += usage.prompt
        self.traffic.response_tokens += usage.response
        # A report that ends a turn, or comes alone (its key first: no content beside it), and
        # no frame after it means no reply is in flight. One beside a reply's content (Vertex
        # may send usage with any message) does not: -1, the turn's end or the bound decides.
        ends_turn = TURN_COMPLETE_KEY in frame or frame.find(USAGE_KEY, 0, 32) >= 0
        self._usage_frame_index = self.traffic.frames_out if ends_turn else -1
        self._spawn(self._charge(usage))

    async def _charge(self, usage: Usage) -> None:
        refusal = await self.on_usage(usage)
        if refusal is None or self._close_after_turn is not None:
            return
        self._close_after_turn = refusal
        if self._usage_frame_index == self.traffic.frames_out:
            # Usage came at the end of a turn and nothing followed: no reply is in flight.
            self.end(Ending("relay", TRY_AGAIN_LATER, refusal, "tokens"))

    # --- the fast lane (app/relay/fast_lane.py) -------------------------------------------

    def _start_fast_lane(self) -> None:
        """Once setupComplete is through and the held frames are sent: every frame after
        that may take the fast lane."""
        client, upstream = self.client_lane, lane_of(self.upstream)
        if client is None or upstream is None or self._ended.done():
            return
        client.set_sink(self._client_message)
        upstream.set_sink(self._upstream_message)

    def _stop_fast_lane(self) -> None:
        client, upstream = self.client_lane, lane_of(self.upstream)
        if client is not None and upstream is not None:
            client.set_sink(None)
            upstream.set_sink(None)

    def _client_message(self, frame: str | bytes) -> bool:
        """A client frame, offered straight from the client connection's callback."""
        # It has a lane, or this sink would not be set (typing.cast is a call: this is not).
        upstream: Lane = self.upstream  # type: ignore[assignment]
        if not self._client_waiting or not upstream.writable_now:
            return False
        try:
            taken = self._take_client_frame(frame)
            if isinstance(taken, Ending):
                self.end(taken)
            elif taken is not None:
                upstream.send_now(taken)
                self.traffic.fast_in += 1
        except Exception:
            logger.exception("session fast lane client->upstream failed")
            self.end(Ending("relay", INTERNAL_ERROR, "internal error", "error"))
        return True

    def _upstream_message(self, frame: str | bytes) -> bool:
        """An upstream frame, offered straight from the upstream connection's callback. Frames
        the relay acts on (usage, goAway, the turn a refusal waits for) decline."""
        client = self.client_lane
        if not self._upstream_waiting or client is None or self._close_after_turn is not None:
            return False
        if isinstance(frame, str):
            if _USAGE_TEXT in frame or frame.find(_GOAWAY_TEXT, 0, 32) >= 0:
                return False
        elif USAGE_KEY in frame or frame.find(GOAWAY_KEY, 0, 32) >= 0:
            return False
        if not client.writable_now:
            return False
        traffic = self.traffic
        try:
            traffic.bytes_out += client.send_now(frame)
        except Exception:  # raised in the upstream connection's callback, it would end that
            logger.exception("session fast lane upstream->client failed")
            self.end(Ending("relay", INTERNAL_ERROR, "internal error", "error"))
            return True
        traffic.frames_out += 1
        traffic.fast_out += 1
        return True

    # --- helpers --------------------------------------------------------------------------

    async def _send_to_client(self, frame: bytes) -> None:
        # A failed send means the session is ending anyway; run() handles its close.
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.client.send({"type": "websocket.send", "bytes": frame})

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
