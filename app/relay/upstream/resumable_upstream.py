"""An upstream leg that outlives its connection: transparent session resumption in the relay.

The service ends every Live connection after about ten minutes (a `goAway`, then a 1000 close)
and connections drop. `ResumableUpstream` gives the session's pumps the surface of one
`websockets` connection (`send`, `recv`, `close`) and switches connections behind it:

- The setup asks the upstream for transparent resumption. Each `sessionResumptionUpdate` with
  `resumable: true` is a checkpoint: a handle, and the client frames it has consumed
  (`lastConsumedClientMessageIndex`, counted per connection with the setup as 0).
- Client frames are numbered and kept in a `ReplayBuffer` until a checkpoint covers them.
- A switch (after a `goAway`, a 1000 close, a drop, or once after a 1011) opens a connection
  resumed with the latest checkpoint's handle, then replays the frames after it, in order,
  once. Client frames arriving meanwhile wait in the buffer and follow the replay.
- After a `goAway` the switch waits for a resumable moment (the end of a turn) for a little
  while, then goes anyway: the turn in flight is then cut (the client gets `interrupted` and
  `turnComplete`) and answered again from the replayed input on the new connection.
- Make-before-break: the new connection is resumed while the old one is still open, and the
  old one is closed once the new one is ready. A service that refuses that (1011 while the
  old connection is open) gets break-before-make: close first, then resume.
- Anything else ends the session explicitly (`UpstreamSwitchFailed`, a 1011 to the client):
  a refused handle, input lost over the buffer's bound, a switch past its deadline.

Until the first checkpoint the session can still be moved: a connection opened with the
original setup and every client frame replayed is the same session as far as the model knows.

The hot path adds, per upstream frame, a look at its first bytes for the three control
messages, and per client frame an append to the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from app import bounded_json
from app.metrics import RelayMetrics
from app.relay.closes import INTERNAL_ERROR
from app.relay.fast_lane import Lane, MessageSink, lane_of
from app.relay.sniff import GOAWAY_KEY, SETUP_COMPLETE_KEY
from app.relay.upstream.replay_budget import ReplayBudget
from app.relay.upstream.replay_buffer import ReplayBuffer
from app.relay.upstream.upstream import UpstreamUnavailable
from app.relay.upstream.upstream_leg import UpstreamConnection, UpstreamSwitchFailed
from app.settings import Settings

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[UpstreamConnection]]
Cause = Literal["goaway", "closed", "lost", "error"]
Mode = Literal["make_before_break", "break_before_make"]
IndexCounting = Literal["per_connection", "per_session"]

# Control messages put their key first; a look at the head of a frame rules them out.
_HEAD_BYTES = 64
_UPDATE_KEY = b'"sessionResumptionUpdate"'
_UPDATE_TEXT = _UPDATE_KEY.decode()
_GOAWAY_TEXT = GOAWAY_KEY.decode()
_INDEX_FIELD = "lastConsumedClientMessageIndex"
# Switches after drops, errors, or connections that ended (goAway included) within a second,
# with no upstream frame in between: an upstream that keeps ending the session (a duration
# cap does: a goAway, then 1011, on every resumed connection) must end it, not make the relay
# reconnect in a loop.
MAX_SWITCHES_WITHOUT_TRAFFIC = 3
YOUNG_CONNECTION_SECONDS = 1.0
# How the service's 1011 at a deadline begins ("Deadline expired before operation could
# complete."), at the 58-minute hard close or a session duration cap.
_DEADLINE_EXPIRED = "Deadline expired"
# Told to the client when a switch cuts a reply: the reply stops, and the turn ends.
_CUT_TURN = (
    b'{"serverContent":{"interrupted":true}}',
    b'{"serverContent":{"turnComplete":true}}',
)


@dataclass(frozen=True)
class ResumptionPolicy:
    buffer_bytes: int
    switch_timeout_seconds: float
    goaway_wait_seconds: float
    make_before_break: bool = True
    # How the upstream numbers consumed client messages (Vertex does not document it):
    # per connection with the setup as 0, or on across the connections of a session.
    index_counting: IndexCounting = "per_connection"


def resumption_policy(settings: Settings) -> ResumptionPolicy:
    return ResumptionPolicy(
        buffer_bytes=settings.resumption_buffer_bytes,
        switch_timeout_seconds=settings.resumption_switch_timeout_seconds,
        goaway_wait_seconds=settings.resumption_goaway_wait_seconds,
        make_before_break=settings.resumption_make_before_break,
        index_counting=settings.resumption_index_counting,
    )


@dataclass(frozen=True)
class _Checkpoint:
    handle: str | None  # None: the original setup (no handle was ever resumable)
    seq: int  # client frames up to this number are part of the handle's state
    index: int | None  # the upstream's consumed index for it (None: not known)


class _RefusedWhileOpen(Exception):
    """The upstream refused a resume while the old connection was still open (1011)."""


@dataclass(frozen=True)
class ClientResumption:
    """What the client itself asked for in `setup.sessionResumption`."""

    asked: bool  # it gets sessionResumptionUpdate frames
    transparent: bool  # they carry lastConsumedClientMessageIndex, in its own numbering
    handle: str | None  # it resumes a session of its own


def split_setup(frame: str | bytes) -> tuple[dict[str, Any], ClientResumption]:
    """The accepted setup without its `sessionResumption`, and what the client asked for."""
    setup: dict[str, Any] = json.loads(frame)["setup"]
    asked: Any = None
    for spelling in ("sessionResumption", "session_resumption"):
        if spelling in setup:
            asked = setup.pop(spelling)
    if not isinstance(asked, dict):
        asked = {} if asked is not None else None
    if asked is None:
        return setup, ClientResumption(asked=False, transparent=False, handle=None)
    handle = asked.get("handle")
    return setup, ClientResumption(
        asked=True,
        transparent=bool(asked.get("transparent")),
        handle=handle if isinstance(handle, str) and handle else None,
    )


class ResumableUpstream:
    """One session's upstream across as many connections as it takes (see the module doc)."""

    # Slots: a session holds one, and its 32 attributes would otherwise take an unshared
    # instance dict (CPython shares keys up to 29): 1.3 KB more per session.
    __slots__ = (
        "_binary",
        "_buffer",
        "_candidate",
        "_checkpoint",
        "_closing",
        "_conn",
        "_conn_base_index",
        "_conn_base_seq",
        "_conn_opened_at",
        "_connect",
        "_connect_seconds",
        "_ended_by_deadline",
        "_error_switch_spent",
        "_goaway_deadline",
        "_lane",
        "_loop",
        "_make_before_break",
        "_metrics",
        "_out",
        "_policy",
        "_resumable",
        "_retiring",
        "_setup",
        "_setup_completed",
        "_setup_sent",
        "_sink",
        "_spare",
        "_switch_due",
        "_switching",
        "_unstable_switches",
        "client",
        "switches",
    )

    def __init__(
        self,
        connect: Connect,
        connection: UpstreamConnection,
        setup_frame: str | bytes,
        policy: ResumptionPolicy,
        metrics: RelayMetrics | None = None,
        budget: ReplayBudget | None = None,
    ) -> None:
        self._connect = connect
        self._conn = connection
        self._policy = policy
        self._metrics = metrics
        self._binary = isinstance(setup_frame, bytes)
        self._setup, self.client = split_setup(setup_frame)
        self._loop = asyncio.get_running_loop()
        self._buffer = ReplayBuffer(policy.buffer_bytes, budget)
        # A client's own handle carries an index from its earlier connections: unknown here.
        self._checkpoint = _Checkpoint(self.client.handle, 0, None if self.client.handle else 0)
        # The checkpoint _conn started from, to turn its consumed indexes into our numbers.
        self._conn_base_seq = 0
        self._conn_base_index: int | None = self._base_index(self._checkpoint)
        self._conn_opened_at = self._loop.time()
        self._setup_sent = False
        self._make_before_break = policy.make_before_break
        self._switching = False
        self._closing = False
        self._resumable = True  # between turns: no reply or tool call in flight
        self._switch_due: Cause | None = None
        self._goaway_deadline: float | None = None
        self._error_switch_spent = False  # a 1011 gets one switch until the upstream answers
        # The connection being replaced was closed at the service's hard deadline (1011
        # "Deadline expired ...", reported at 58 minutes): a refused resume then says so.
        self._ended_by_deadline = False
        self._unstable_switches = 0
        # Frames for the client that recv() returns first: relay-made ones, and a resumed
        # connection's setupComplete while the session still waits for its first one. Rare:
        # a list (a deque is 760 bytes).
        self._out: list[str | bytes] = []
        # The session's first setupComplete, whichever connection delivers it, reaches it
        # once: a switch before it came hands on the resumed connection's.
        self._setup_completed = False
        self._candidate: UpstreamConnection | None = None  # a connection being resumed
        self._retiring: set[asyncio.Task[None]] = set()
        self._connect_seconds = 0.0  # of the latest switch's new connection, for its log line
        self._spare: asyncio.Task[UpstreamConnection] | None = None  # opened at a goAway
        self.switches = 0  # switches done, for the session's usage record
        # The fast lane (app/relay/fast_lane.py): the session's sink, and the current
        # connection's lane when it has one (the relay's `LeanConnection` always does).
        self._sink: MessageSink | None = None
        self._lane: Lane | None = lane_of(connection)

    @property
    def first_setup_frame(self) -> str | bytes:
        """The setup for the first connection: the client's, asking for transparent resumption
        (and resuming the client's own handle, if it gave one)."""
        return self._setup_frame(self._checkpoint.handle)

    def _setup_frame(self, handle: str | None) -> str | bytes:
        resumption: dict[str, Any] = {"transparent": True}
        if handle is not None:
            resumption["handle"] = handle
        text = json.dumps(
            {"setup": {**self._setup, "sessionResumption": resumption}}, separators=(",", ":")
        )
        return text.encode() if self._binary else text

    # --- client -> upstream ---------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        if not self._setup_sent:
            # The session sends the setup first (`first_setup_frame`); it is not client input.
            self._setup_sent = True
            await self._conn.send(message)
            return
        self._buffer.append(message)
        if self._switching:
            return  # sent by the switch, after the replay
        try:
            await self._conn.send(message)
        except ConnectionClosed:
            # Not the client's problem: recv() sees the close and switches, and the frame,
            # kept in the buffer, is replayed on the new connection.
            return

    # --- the fast lane ----------------------------------------------------------------------

    @property
    def writable_now(self) -> bool:
        """A client frame can be taken now: buffered for the switch under way, or written to a
        connection that takes it at once. A connection that has closed takes it into the
        buffer only, as `send` does: `recv` sees the close and the switch replays it."""
        if not self._setup_sent:
            return False
        if self._switching:
            return True
        lane = self._lane
        return lane is not None and (lane.writable_now or self._conn.state is not State.OPEN)

    def send_now(self, message: str | bytes) -> int:
        """`send`, for a caller that checked `writable_now`."""
        self._buffer.append(message)
        lane = self._lane
        if not self._switching and lane is not None and lane.writable_now:
            return lane.send_now(message)
        return 0  # kept for the switch's replay

    def set_sink(self, sink: MessageSink | None) -> None:
        self._sink = sink
        if self._lane is not None:
            self._lane.set_sink(self._through if sink is not None else None)

    def _through(self, message: str | bytes) -> bool:
        """The current connection's sink: what `recv` would return at once goes to the
        session's sink; control messages and anything while `recv` has other work decline."""
        sink = self._sink
        if sink is None or self._out or self._switch_due is not None:
            return False
        head = message[:_HEAD_BYTES]
        if isinstance(head, str):
            update, goaway = _UPDATE_TEXT in head, _GOAWAY_TEXT in head
        else:
            update, goaway = _UPDATE_KEY in head, GOAWAY_KEY in head
        if update:
            # A checkpoint the client does not see (it did not ask for updates), with no goAway
            # waiting for it: taken here. Anything else it could lead to is recv's to do.
            if self.client.asked or self._goaway_deadline is not None:
                return False
            self._on_update(message)
            return True
        if goaway or not sink(message):
            return False
        self._unstable_switches = 0
        self._error_switch_spent = False
        self._setup_completed = True
        return True

    def _make_current(self, conn: UpstreamConnection) -> None:
        """Switch the fast lane, if any, over to `conn`."""
        if self._lane is not None:
            self._lane.set_sink(None)
        self._conn = conn
        self._lane = lane_of(conn)
        if self._lane is not None and self._sink is not None:
            self._lane.set_sink(self._through)

    # --- upstream -> client ---------------------------------------------------------------

    async def recv(self) -> str | bytes:
        while True:
            if self._out:
                return self._out.pop(0)
            if self._switch_due is not None:
                await self._switch(self._switch_due)
                continue
            conn = self._conn
            try:
                if self._goaway_deadline is None:
                    frame = await conn.recv()
                else:
                    # Cancelling recv() loses no message (websockets guarantees it).
                    async with asyncio.timeout_at(self._goaway_deadline):
                        frame = await conn.recv()
            except TimeoutError:
                self._switch_due = "goaway"  # no resumable moment came in time: go anyway
                continue
            except ConnectionClosed as closed:
                if self._closing or conn is not self._conn:
                    raise
                try:
                    cause = self._cause_of(closed)
                except (ConnectionClosed, UpstreamSwitchFailed):
                    self._drop_spare()  # the session ends without calling close()
                    raise
                await self._switch(cause)
                continue
            head = frame[:_HEAD_BYTES]
            if isinstance(head, str):
                head = head.encode()
            if _UPDATE_KEY in head:
                forwarded = self._on_update(frame)
                if forwarded is not None:
                    return forwarded
            elif GOAWAY_KEY in head:
                self._on_goaway(frame)
            else:
                # The upstream answers: a later failure is a new one, worth a switch again.
                self._unstable_switches = 0
                self._error_switch_spent = False
                self._setup_completed = True  # the first frame of all is setupComplete
                return frame

    def _on_update(self, frame: str | bytes) -> str | bytes | None:
        """Take a checkpoint from a resumption update; return what the client gets of it."""
        try:
            update = bounded_json.loads(frame)["sessionResumptionUpdate"]
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable sessionResumptionUpdate from the upstream")
            return None
        if not isinstance(update, dict):
            return None
        handle = update.get("newHandle")
        seq: int | None = None
        if update.get("resumable") and isinstance(handle, str) and handle:
            index, seq = self._consumed_seq(update.get(_INDEX_FIELD))
            self._checkpoint = _Checkpoint(handle, seq, index)
            self._buffer.prune_through(seq)
            self._resumable = True
            if self._goaway_deadline is not None:
                self._switch_due = "goaway"  # the moment the goAway was waiting for
        else:
            self._resumable = False
        if not self.client.asked:
            return None
        # The client's own resumption: it sees the upstream's handles, and the consumed index
        # in its own numbering (its setup 0, its frames 1, 2, ...), if it asked for one.
        update = dict(update)
        update.pop(_INDEX_FIELD, None)
        if self.client.transparent and seq is not None:
            update[_INDEX_FIELD] = str(seq)
        text = json.dumps({"sessionResumptionUpdate": update}, separators=(",", ":"))
        return text.encode() if isinstance(frame, bytes) else text

    def _consumed_seq(self, reported: object) -> tuple[int | None, int]:
        """The upstream's consumed index, and the number of the last client frame it covers.

        Our numbers run on across connections; the upstream counts from the checkpoint the
        connection resumed (per connection: from 0, the setup). Without an index (an upstream
        that does not count) or a base to count from, everything sent so far is taken as
        consumed: the best guess available, and what a handle issued at the end of a turn
        means in practice.
        """
        last = self._buffer.last_seq
        try:
            index = int(str(reported))
        except ValueError:
            return None, last
        if self._conn_base_index is None:
            self._conn_base_index = index - (last - self._conn_base_seq)  # learnt, as above
        seq = self._conn_base_seq + index - self._conn_base_index
        return index, max(self._conn_base_seq, min(seq, last))

    def _base_index(self, checkpoint: _Checkpoint) -> int | None:
        if self._policy.index_counting == "per_connection":
            return 0
        return checkpoint.index

    def _on_goaway(self, frame: str | bytes) -> None:
        """Plan a switch: now when between turns, else at the end of the turn or soon after."""
        if self._switching or self._goaway_deadline is not None or self._switch_due is not None:
            return
        if self._spare is None:
            # Handshake now, while the old connection still serves: the switch then waits only
            # for the resumed setup. (A connection that has sent nothing resumes nothing, so
            # even a service that refuses resumes while the old one is open accepts it.)
            self._spare = asyncio.ensure_future(self._connect())
        if self._resumable:
            self._switch_due = "goaway"
            return
        wait = self._policy.goaway_wait_seconds
        time_left = _time_left(frame)
        if time_left is not None:
            wait = min(wait, time_left / 2)  # leave half the notice for the switch itself
        self._goaway_deadline = self._loop.time() + wait

    def _cause_of(self, closed: ConnectionClosed) -> Cause:
        """Why the current connection ended, if that calls for a switch; else re-raise."""
        received = closed.rcvd
        self._ended_by_deadline = received is not None and received.reason.startswith(
            _DEADLINE_EXPIRED
        )
        if received is None:
            cause: Cause = "lost"
        elif received.code in (1000, 1001):
            cause = "closed"
        elif received.code == INTERNAL_ERROR and not self._error_switch_spent:
            self._error_switch_spent = True
            cause = "error"
        else:
            # The client's own doing (1007, 1008, ...) or a second backend failure in a row:
            # the session ends with the upstream's close, passed on as without resumption.
            raise closed
        return cause

    def _failed(self, cause: Cause, failed: UpstreamSwitchFailed) -> UpstreamSwitchFailed:
        """Count and log a failed switch; return it to be raised."""
        if self._metrics is not None:
            self._metrics.upstream_switch_failures_total.labels(failed.kind).inc()
        logger.warning("upstream switch failed (%s): %s", cause, failed.reason)
        return failed

    # --- the switch -----------------------------------------------------------------------

    async def _switch(self, cause: Cause) -> None:
        self._switch_due = None
        self._goaway_deadline = None
        old = self._conn
        checkpoint = self._checkpoint
        cut_turn = not self._resumable
        started = self._loop.time()
        self._switching = True
        try:
            mode = await self._switch_within_deadline(cause, old, checkpoint)
        except UpstreamSwitchFailed as failed:
            self._retire(old)
            self._drop_spare()
            raise self._failed(cause, failed) from None
        finally:
            if self._candidate is not None:
                self._retire(self._candidate)  # resumed, then given up (deadline, cancel)
                self._candidate = None
        gap = self._loop.time() - started
        self.switches += 1
        if cut_turn:
            self._out.extend(_CUT_TURN)
            self._resumable = True
        if self._metrics is not None:
            self._metrics.upstream_switches_total.labels(cause, mode).inc()
            self._metrics.upstream_switch_gap_seconds.labels(mode).observe(gap)
            if cut_turn:
                self._metrics.upstream_switch_cut_turns_total.inc()
        logger.info(
            "upstream switched",
            extra={
                "cause": cause,
                "mode": mode,
                "gap_ms": round(gap * 1000, 1),
                "connect_ms": round(self._connect_seconds * 1000, 1),
                "replayed": self._buffer.last_seq - checkpoint.seq,
                "cut_turn": cut_turn,
            },
        )

    async def _switch_within_deadline(
        self, cause: Cause, old: UpstreamConnection, checkpoint: _Checkpoint
    ) -> Mode:
        young = self._loop.time() - self._conn_opened_at < YOUNG_CONNECTION_SECONDS
        if cause in ("lost", "error") or young:
            self._unstable_switches += 1
            if self._unstable_switches > MAX_SWITCHES_WITHOUT_TRAFFIC:
                raise UpstreamSwitchFailed(
                    "unstable",
                    f"upstream connections keep ending ({MAX_SWITCHES_WITHOUT_TRAFFIC} "
                    "switches without a reply)",
                )
        if not self._buffer.replayable_from(checkpoint.seq):
            raise UpstreamSwitchFailed(
                "buffer_overflow",
                f"{self._overflow()}: client input since the last resumable point is lost",
            )
        try:
            async with asyncio.timeout(self._policy.switch_timeout_seconds):
                mode = await self._resume(old, checkpoint)
                await self._replay(checkpoint)
        except TimeoutError:
            seconds = self._policy.switch_timeout_seconds
            raise UpstreamSwitchFailed(
                "deadline", f"upstream switch did not finish within {seconds:g}s"
            ) from None
        return mode

    def _overflow(self) -> str:
        """Which bound lost client input: the session's own, or the process's budget."""
        if self._buffer.dropped:
            return "replay buffer dropped at the relay's memory budget for replay buffers"
        return f"replay buffer over its bound of {self._buffer.max_bytes} bytes"

    async def _resume(self, old: UpstreamConnection, checkpoint: _Checkpoint) -> Mode:
        """Make `_candidate` the resumed connection; say how it was made."""
        if self._make_before_break and old.state is State.OPEN:
            try:
                await self._open_resumed(checkpoint, old_open=True)
            except _RefusedWhileOpen:
                # It will refuse again: this session's later switches break first.
                logger.info("upstream refused a resume while the old connection was open")
                self._make_before_break = False
            else:
                self._retire(old)
                return "make_before_break"
        with contextlib.suppress(ConnectionClosed):
            await old.close(1000, "switching connections")
        await self._open_resumed(checkpoint, old_open=False)
        return "break_before_make"

    async def _open_resumed(self, checkpoint: _Checkpoint, *, old_open: bool) -> None:
        started = self._loop.time()
        try:
            conn = await self._new_connection()
        except UpstreamUnavailable as exc:
            raise UpstreamSwitchFailed("unavailable", f"switch failed: {exc}") from None
        self._connect_seconds = self._loop.time() - started
        self._candidate = conn
        try:
            await conn.send(self._setup_frame(checkpoint.handle))
            first = await conn.recv()
        except ConnectionClosed as closed:
            self._candidate = None
            received = closed.rcvd
            code, reason = (received.code, received.reason) if received else (1006, "")
            if old_open and code == INTERNAL_ERROR:
                raise _RefusedWhileOpen from None
            after = " after a 1011 Deadline expired close" if self._ended_by_deadline else ""
            raise UpstreamSwitchFailed(
                "refused", f"upstream refused to resume the session{after}: {code} {reason}".strip()
            ) from None
        head = first[:_HEAD_BYTES]
        if SETUP_COMPLETE_KEY not in (head.encode() if isinstance(head, str) else head):
            raise UpstreamSwitchFailed(
                "refused", "upstream answered a resumed setup with something else"
            )
        if not self._setup_completed:
            # The connection the session's setup went to ended before answering it: this
            # answer is the session's, not the switch's.
            self._setup_completed = True
            self._out.append(first)

    async def _new_connection(self) -> UpstreamConnection:
        """The spare opened at the goAway if it is still good, else a fresh connection."""
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(UpstreamUnavailable):
                conn = await spare
                if conn.state is State.OPEN:
                    return conn
        return await self._connect()

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is None:
            return
        if not spare.done():
            spare.cancel()
        elif not spare.cancelled() and spare.exception() is None:
            self._retire(spare.result())

    async def _replay(self, checkpoint: _Checkpoint) -> None:
        """Make the candidate current and send it every client frame after the checkpoint, then let
        new frames through. Frames the client sends meanwhile join the end of the replay."""
        conn = self._candidate
        assert conn is not None
        self._candidate = None
        self._make_current(conn)
        self._conn_base_seq = checkpoint.seq
        self._conn_base_index = self._base_index(checkpoint)
        self._conn_opened_at = self._loop.time()
        buffer = self._buffer
        seq = checkpoint.seq + 1
        try:
            while seq <= buffer.last_seq:
                frame = buffer.get(seq)
                if frame is None:
                    raise UpstreamSwitchFailed(
                        "buffer_overflow", f"{self._overflow()} during a switch"
                    )
                await conn.send(frame)
                seq += 1
        except ConnectionClosed:
            pass  # the new connection died too: recv() sees it and switches again
        # No await between the last check above and this: no frame can be left behind.
        self._switching = False

    # --- ending ---------------------------------------------------------------------------

    def release(self) -> None:
        """Give the replay buffer's bytes back to the process's budget: the session is over."""
        self._buffer.release()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closing = True
        self._drop_spare()
        if self._candidate is not None:
            self._retire(self._candidate)
            self._candidate = None
        await self._conn.close(code, reason)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def _retire(self, conn: UpstreamConnection) -> None:
        """Close a connection no longer used, without making the session wait for it."""
        if conn.state is State.CLOSED:
            return
        task = asyncio.ensure_future(conn.close(1000, "switched to a new connection"))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _time_left(frame: str | bytes) -> float | None:
    """`goAway.timeLeft` in seconds ("50s", "0.5s"), or None when absent or unreadable."""
    try:
        left = bounded_json.loads(frame)["goAway"]["timeLeft"]
        return float(str(left).removesuffix("s"))
    except (ValueError, KeyError, TypeError):
        return None
