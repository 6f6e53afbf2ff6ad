"""One simulated client session: open, set up, send in its pacer slot, time answers, close."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidStatus

from app.loadtest.config import LoadConfig
from app.loadtest.connection import LiveConnection
from app.loadtest.exchange import CrossTalkError, Exchange
from app.loadtest.pacer import Pacer
from app.loadtest.recorder import Recorder


class SessionFailedError(Exception):
    """The session could not open; the message is the error kind that is counted."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how every session of a run connects."""

    url: str
    headers: dict[str, str] = field(repr=False)
    ssl_context: ssl.SSLContext | None
    compression: bool

    @classmethod
    def from_config(cls, config: LoadConfig) -> Endpoint:
        headers = {} if config.api_key is None else {"Authorization": f"Bearer {config.api_key}"}
        context = None
        if config.url.startswith("wss://"):
            cafile = None if config.ca_file is None else str(config.ca_file)
            context = ssl.create_default_context(cafile=cafile)
        return cls(config.url, headers, context, config.compression)


class Session:
    """A client that sends in its pacer slot until told to stop, then waits for its answers.

    A storm session (`storm=True`) only opens and holds its session until told to stop: the
    storm measures admissions, and the streaming sessions measure what the storm costs them.
    """

    def __init__(
        self,
        index: int,
        config: LoadConfig,
        endpoint: Endpoint,
        exchange: Exchange,
        recorder: Recorder,
        pacer: Pacer,
        *,
        storm: bool = False,
    ) -> None:
        self._index = index
        self._storm = storm
        self._config = config
        self._endpoint = endpoint
        self._exchange = exchange
        self._recorder = recorder
        self._pacer = pacer
        self._connection: LiveConnection | None = None
        # True once setupComplete arrives, False if something else came first.
        self._set_up: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._all_answered = asyncio.Event()
        self._sending = False
        self._sent = 0
        self._answered = 0
        self._cross_talk = False
        self._opened = False

    async def run(self, stop_sending: asyncio.Event) -> None:
        """Run the session; every outcome ends up in the recorder, nothing is raised."""
        try:
            await self._run(stop_sending)
        # The session boundary: a broken session is counted, it must not end the run.
        except Exception as exc:  # noqa: BLE001
            error = f"internal error: {type(exc).__name__}: {exc}"
            if self._opened:
                self._recorder.session_ended(None, error, unanswered=self._sent - self._answered)
            else:
                self._recorder.session_failed_to_open(error, storm=self._storm)
        finally:
            self._pacer.remove(self)
            if self._connection is not None and not self._connection.closed.done():
                self._connection.abort()

    async def _run(self, stop_sending: asyncio.Event) -> None:
        try:
            connection = await self._open()
        except SessionFailedError as exc:
            self._recorder.session_failed_to_open(str(exc), storm=self._storm)
            return
        self._opened = True
        if not self._storm:
            self._sending = True
            self._pacer.add(self, self._index)
        error = await self._until_stopped(connection, stop_sending)
        self._pacer.remove(self)
        self._sending = False
        if error is None:
            if self._answered >= self._sent:
                self._all_answered.set()
            # Frames still unanswered after the drain count as lost; the session was fine.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.drain_seconds):
                    await self._all_answered.wait()
        await connection.close(self._config.open_timeout_seconds)
        if error is None and self._cross_talk:
            error = "answer delivered to the wrong session"
        self._opened = False  # ended: from here on nothing may be counted twice
        self._recorder.session_ended(
            connection.close_code, error, unanswered=self._sent - self._answered
        )

    async def _open(self) -> LiveConnection:
        started_ns = time.monotonic_ns()
        endpoint = self._endpoint
        try:
            async with asyncio.timeout(self._config.open_timeout_seconds):
                connection = self._connection = await LiveConnection.open(
                    endpoint.url,
                    on_message=self._on_message,
                    headers=endpoint.headers,
                    ssl_context=endpoint.ssl_context,
                    compression=endpoint.compression,
                )
                connected_ns = time.monotonic_ns()
                connection.send_text(self._exchange.setup_frame())
                await _first_of(self._set_up, connection.closed)
        except InvalidStatus as exc:
            raise SessionFailedError(f"refused: HTTP {exc.response.status_code}") from None
        except (OSError, InvalidHandshake) as exc:
            raise SessionFailedError(f"connect failed: {type(exc).__name__}") from None
        except TimeoutError:
            raise SessionFailedError("no setupComplete in time") from None
        if not self._set_up.done():
            raise SessionFailedError(f"closed during setup: {_describe(connection)}")
        if not self._set_up.result():
            raise SessionFailedError("first message was not setupComplete")
        self._recorder.session_opened(
            connected_ns - started_ns, time.monotonic_ns() - started_ns, storm=self._storm
        )
        return connection

    async def _until_stopped(
        self, connection: LiveConnection, stop_sending: asyncio.Event
    ) -> str | None:
        """Wait for the end of sending; the error kind if the peer closed the session first."""
        stop = asyncio.ensure_future(stop_sending.wait())
        try:
            await _first_of(stop, connection.closed)
        finally:
            stop.cancel()
        if connection.closed.done():
            return f"closed by peer: {_describe(connection)}"
        return None

    def send_due(self) -> None:
        """The pacer's call: send this slot's frame, stamped with the time it really leaves."""
        assert self._connection is not None
        sent_ns = time.monotonic_ns()
        frame = self._exchange.next_frame(sent_ns)
        if frame is None:
            return
        if self._connection.send_text(frame):
            self._sent += 1
            self._recorder.frame_sent(sent_ns)
        else:
            self._recorder.blocked_sends += 1

    def _on_message(self, message: bytes, received_ns: int) -> None:
        if not self._set_up.done():
            self._set_up.set_result(b'"setupComplete"' in message)
            return
        try:
            sent_ns = self._exchange.answered(message)
        except CrossTalkError:
            self._cross_talk = True
            return
        if sent_ns is None:
            self._recorder.other_frames += 1
            return
        self._answered += 1
        self._recorder.frame_answered(sent_ns, received_ns)
        if not self._sending and self._answered >= self._sent:
            self._all_answered.set()


async def _first_of(*waiters: asyncio.Future[Any]) -> None:
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)


def _describe(connection: LiveConnection) -> str:
    code = connection.close_code
    if code is None or code == 1006:
        return "1006 (no close frame)"
    reason = connection.close_reason
    return f"{code} {reason}" if reason else str(code)
