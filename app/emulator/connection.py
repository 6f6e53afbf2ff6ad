"""One client connection: authentication, setup, then the session until either side ends.

The order mirrors the service: the bearer token is checked (at the upgrade or, by default,
when the setup arrives), the first frame must be a valid setup, `setupComplete` answers it,
and from then on every frame goes to the session while the connection's lifetime runs out
(`goAway`, then a 1000 close).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from app.emulator.caps import DEADLINE_EXPIRED, enforce_cap, notice_left
from app.emulator.config import EmulatorConfig, Faults
from app.emulator.consumption import ConsumptionLog
from app.emulator.resumption import (
    RESUMED_WHILE_OPEN,
    SESSION_NOT_FOUND,
    Conversation,
    HandleStore,
    SessionState,
)
from app.emulator.session import LiveSession
from app.emulator.setup import parse_setup, refused_fields
from app.emulator.speech import OUTPUT_MIME_TYPE
from app.emulator.stats import EmulatorStats
from app.emulator.wire import (
    INVALID_ARGUMENT,
    duration_text,
    encode_server_message,
    interpret,
    load_frame,
)
from app.protocol.canonical import check_client_message
from app.protocol.errors import ProtocolViolation, close_reason

UNAUTHENTICATED = "Request had invalid authentication credentials."
LIFETIME_REACHED = "The operation was cancelled."
INTERNAL_ERROR = "Internal error encountered."
_NO_FAULTS = Faults()
_LIVE_STATES = (State.CONNECTING, State.OPEN)

# Echo mode answers an audio chunk with these around the very same base64 text.
_ECHO_HEAD = (
    '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
    f'{{"mimeType":"{OUTPUT_MIME_TYPE}","data":"'
)
_ECHO_TAIL = '"}}]}}}'


def authorized(authorization: str | None, required: str | Callable[[str], bool] | None) -> bool:
    """Whether an `Authorization` header carries the bearer token the emulator requires."""
    if required is None:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    if callable(required):
        return bool(required(token))
    return hmac.compare_digest(token.encode(), required.encode())


@dataclass(frozen=True)
class ConnectionContext:
    """What every connection of one emulator shares."""

    config: EmulatorConfig
    stats: EmulatorStats
    handles: HandleStore
    call_ids: itertools.count[int]


class _FaultCounter:
    """Counts received frames and says when a close or drop fault is due."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._frames = 0

    def due(self) -> Literal["close", "drop"] | None:
        faults = self._faults
        if faults.drop_after_frames is not None and self._frames >= faults.drop_after_frames:
            return "drop"
        if faults.close_after_frames is not None and self._frames >= faults.close_after_frames:
            return "close"
        return None

    def count_frame(self) -> Literal["close", "drop"] | None:
        self._frames += 1
        return self.due()


async def _inject(ws: ServerConnection, fault: Literal["close", "drop"], faults: Faults) -> None:
    if fault == "drop":
        ws.transport.abort()  # no close frame: the client sees an abnormal closure (1006)
    else:
        await ws.close(faults.close_code, faults.close_reason)


async def serve_connection(
    ws: ServerConnection, context: ConnectionContext, api_version: str, number: int
) -> None:
    """Serve the emulator's `number`-th connection (from 1) until either side ends it.

    The lifetime runs from the upgrade, whatever the connection is doing: waiting for its
    setup, streaming a reply, holding a tool call.
    """
    set_up = asyncio.Event()  # setupComplete went out
    deadline = asyncio.get_running_loop().time()  # the hard deadline counts from the upgrade
    async with asyncio.TaskGroup() as tasks:
        lifetime = tasks.create_task(_until_closed(_lifetime(ws, context.config, set_up)))
        try:
            await _until_closed(_serve(ws, context, api_version, number, set_up, deadline))
        finally:
            lifetime.cancel()


async def _serve(
    ws: ServerConnection,
    context: ConnectionContext,
    api_version: str,
    number: int,
    set_up: asyncio.Event,
    opened_at: float,
) -> None:
    config = context.config
    faulty = config.faults.apply_to(number)
    faults = _FaultCounter(config.faults if faulty else _NO_FAULTS)
    if config.auth_failure == "close" and not authorized(
        ws.request.headers.get("Authorization") if ws.request else None, config.require_token
    ):
        # Refused once the setup arrives, so that a client waiting for setupComplete reads the
        # close (google-genai turns it into APIError 1008) instead of failing its send.
        await ws.recv()
        await ws.close(1008, UNAUTHENTICATED)
        return
    if (fault := faults.due()) is not None:
        await _inject(ws, fault, config.faults)
        return
    first_frame = await ws.recv()
    context.stats.binary_frames += isinstance(first_frame, bytes)
    if (fault := faults.count_frame()) is not None:
        await _inject(ws, fault, config.faults)
        return
    try:
        opened = _open_session(first_frame, context, api_version, ws)
    except ProtocolViolation as violation:
        await ws.close(violation.code, close_reason(violation.reason))
        return
    try:
        delay = config.faults.setup_delay_seconds if faulty else 0
        if opened.resumed:
            delay += config.faults.resume_setup_delay_seconds
        if delay > 0:
            # A stall that ends early if the client gives up, so the emulator can stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await ws.wait_closed()
        await ws.send(
            encode_server_message({"setupComplete": {"sessionId": opened.conversation.session_id}})
        )
        set_up.set()
        session = opened.session
        await session.start_resumption()
        async with asyncio.TaskGroup() as tasks:
            model = tasks.create_task(_until_closed(session.run_model()))
            updates = tasks.create_task(_until_closed(session.run_resumption_updates()))
            cap = tasks.create_task(_until_closed(_duration_cap(ws, session, config)))
            deadline = tasks.create_task(
                _until_closed(_deadline_close(ws, opened, config, opened_at))
            )
            try:
                await _until_closed(_receive(ws, session, faults, context))
            finally:
                model.cancel()
                updates.cancel()
                cap.cancel()
                deadline.cancel()
    finally:
        opened.conversation.close_connection(opened.number)


@dataclass(frozen=True)
class _OpenedSession:
    session: LiveSession
    conversation: Conversation
    number: int  # the connection's number within its conversation
    resumed: bool


def _open_session(
    frame: str | bytes, context: ConnectionContext, api_version: str, ws: ServerConnection
) -> _OpenedSession:
    config = context.config
    try:
        message = load_frame(frame)
    except ProtocolViolation:
        # A first frame that is not JSON at all gets the service's plainest answer.
        raise ProtocolViolation(1007, INVALID_ARGUMENT) from None
    check_client_message(message, refused_fields(config))
    kind, setup_message = interpret(message)
    if kind != "setup":
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    context.stats.frames_received["setup"] += 1
    setup = parse_setup(setup_message, config, api_version)
    if setup.resume_handle is None:
        conversation, state, last_index = Conversation(), SessionState(), 0
    else:
        snapshot = context.handles.resume(setup.resume_handle)
        if snapshot is None:
            raise ProtocolViolation(1008, SESSION_NOT_FOUND)
        conversation, state = snapshot.conversation, snapshot.state
        if conversation.deadline_expired and config.resume_after_deadline == "refuse":
            # Reported after the 58-minute close; the words of the refusal are not.
            raise ProtocolViolation(1007, INVALID_ARGUMENT)
        if config.resume_while_open == "refuse" and conversation.is_open(snapshot.connection):
            raise ProtocolViolation(1011, RESUMED_WHILE_OPEN)
        conversation.rewind(snapshot.records, context.stats)
        last_index = snapshot.last_index if config.consumed_index_counting == "per_session" else 0
    context.stats.setups.append(setup_message)
    number = conversation.open_connection(lambda: ws.state in _LIVE_STATES)
    log = ConsumptionLog(
        conversation, number, last_index, context.stats, config.max_consumed_records
    )

    async def send(message: dict[str, Any]) -> None:
        await ws.send(encode_server_message(message))

    session = LiveSession(
        setup,
        config,
        send=send,
        state=state,
        log=log,
        handles=context.handles,
        stats=context.stats,
        call_ids=context.call_ids,
    )
    return _OpenedSession(session, conversation, number, resumed=setup.resume_handle is not None)


async def _receive(
    ws: ServerConnection, session: LiveSession, faults: _FaultCounter, context: ConnectionContext
) -> None:
    echo = context.config.echo_audio or session.setup.echoes_audio
    stats = context.stats
    async for frame in ws:
        stats.binary_frames += isinstance(frame, bytes)
        if (fault := faults.count_frame()) is not None:
            await _inject(ws, fault, context.config.faults)
            return
        try:
            message = load_frame(frame)
            if echo and await _echo(ws, message, context.stats):
                continue
            check_client_message(message, session.refused_fields)
            session.handle(*interpret(message))
        except ProtocolViolation as violation:
            await ws.close(violation.code, close_reason(violation.reason))
            return


async def _echo(ws: ServerConnection, message: Any, stats: EmulatorStats) -> bool:
    """Echo mode's hot path: answer audio at once, untouched. False: not audio, not handled.

    It must stay cheap at hundreds of sessions per core: no validation beyond what keeps the
    answer valid JSON, no logging, no task.
    """
    if not isinstance(message, dict):
        return False
    realtime = message.get("realtimeInput", message.get("realtime_input"))
    if not isinstance(realtime, dict):
        return False
    audio = realtime.get("audio")
    blobs = (
        [audio] if audio is not None else realtime.get("mediaChunks", realtime.get("media_chunks"))
    )
    if not isinstance(blobs, list) or len(realtime) != 1:
        return False
    echoes: list[bytes] = []
    video_frames = 0
    for blob in blobs:
        data = blob.get("data") if isinstance(blob, dict) else None
        if not isinstance(data, str) or '"' in data or "\\" in data:
            return False
        if audio is None and not str(blob.get("mimeType", blob.get("mime_type"))).startswith(
            "audio/"
        ):
            video_frames += 1
        else:
            echoes.append(f"{_ECHO_HEAD}{data}{_ECHO_TAIL}".encode())
    stats.frames_received["video"] += video_frames
    stats.frames_received["audio"] += len(echoes)
    for echo in echoes:
        await ws.send(echo)
    return True


async def _lifetime(ws: ServerConnection, config: EmulatorConfig, set_up: asyncio.Event) -> None:
    """goAway `goaway_notice_seconds` before the lifetime ends, then close 1000 exactly as
    long after as the goAway promised. The goAway never precedes setupComplete: a
    connection still being set up gets it then, with what is left (or none, if none is)."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + config.connection_lifetime_seconds
    notice = min(config.goaway_notice_seconds, config.connection_lifetime_seconds)
    await asyncio.sleep(max(0.0, ends_at - notice - loop.time()))
    time_left = notice
    if not set_up.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, ends_at - loop.time())):
                await set_up.wait()
        time_left = notice_left(ends_at - loop.time(), notice)
    if set_up.is_set() and time_left > 0:
        await ws.send(encode_server_message({"goAway": {"timeLeft": duration_text(time_left)}}))
        await asyncio.sleep(time_left)
    await ws.close(1000, LIFETIME_REACHED)


async def _duration_cap(ws: ServerConnection, session: LiveSession, config: EmulatorConfig) -> None:
    if not session.capped:
        return

    async def go_away(time_left: float) -> None:
        await ws.send(encode_server_message({"goAway": {"timeLeft": duration_text(time_left)}}))

    async def close() -> None:
        await ws.close(1011, DEADLINE_EXPIRED)

    await enforce_cap(session.media, config, go_away, close)


async def _deadline_close(
    ws: ServerConnection, opened: _OpenedSession, config: EmulatorConfig, opened_at: float
) -> None:
    """The hard close reported at 58 minutes: no goAway, whatever the session is doing, even
    with context window compression; 1011 "Deadline expired before operation could complete."
    """
    seconds = config.deadline_close(opened.session.model)
    if seconds is None:
        return
    conversation = opened.conversation
    loop = asyncio.get_running_loop()
    while True:
        start = (
            opened_at if config.deadline_close_scope == "connection" else conversation.deadline_from
        )
        if start + seconds <= loop.time():
            break
        # (In conversation scope, another connection's deadline close may move the start.)
        await asyncio.sleep(start + seconds - loop.time())
    conversation.deadline_expired = True
    conversation.deadline_from = loop.time()
    await ws.close(1011, DEADLINE_EXPIRED)


async def _until_closed(work: Coroutine[Any, Any, None]) -> None:
    """Run part of a session; the connection closing under it, cleanly or not, is its end."""
    with contextlib.suppress(ConnectionClosed):
        await work
