"""The lean upstream connection behaves as the `websockets` asyncio client did for the relay:
message types, close codes, keepalive, back-pressure and bounded closes, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.protocol import State
from websockets.server import ServerProtocol

from app.relay.upstream.lean_upstream import LeanConnection

Handler = Callable[[ServerConnection], Awaitable[None]]


async def _open(url: str, **overrides: float | None) -> LeanConnection:
    options: dict[str, float | None] = {
        "ping_interval": None,
        "ping_timeout": None,
        "close_timeout": 2.0,
        **overrides,
    }
    return await LeanConnection.open(
        url,
        headers={"Authorization": "Bearer t"},
        ssl_context=None,
        compression=False,
        ping_interval=options["ping_interval"],
        ping_timeout=options["ping_timeout"],
        close_timeout=cast(float, options["close_timeout"]),
        max_size=None,
        user_agent="live-relay",
    )


@contextlib.asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


class _DeafServer(asyncio.Protocol):
    """Completes the opening handshake, then ignores everything: answers no ping and no
    close, and (once `stop_reading` is called) reads nothing, so the client's writes back up."""

    def __init__(self) -> None:
        self.protocol = ServerProtocol()
        self.transport: asyncio.Transport | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.open:
            return
        self.protocol.receive_data(data)
        for request in self.protocol.events_received():
            self.protocol.send_response(self.protocol.accept(request))  # type: ignore[arg-type]
            self.open = True
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            self.transport.write(chunk)


@contextlib.asynccontextmanager
async def _deaf_server() -> AsyncIterator[tuple[str, list[_DeafServer]]]:
    peers: list[_DeafServer] = []

    def factory() -> _DeafServer:
        peers.append(peer := _DeafServer())
        return peer

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws", peers
    finally:
        for peer in peers:
            if peer.transport is not None:
                peer.transport.abort()
        server.close()


async def test_text_stays_str_and_binary_stays_bytes_both_ways() -> None:
    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with _server(echo) as url:
        connection = await _open(url)
        await connection.send('{"setup": {}}')
        await connection.send(b'{"realtimeInput": {}}')
        assert await connection.recv() == '{"setup": {}}'
        assert await connection.recv() == b'{"realtimeInput": {}}'
        await connection.close()
        assert connection.state is State.CLOSED


async def test_the_upstreams_close_code_and_reason_reach_the_reader() -> None:
    async def refuse(connection: ServerConnection) -> None:
        await connection.send(b'{"setupComplete": {}}')
        await connection.close(1008, "BidiGenerateContent session not found")

    async with _server(refuse) as url:
        connection = await _open(url)
        assert await connection.recv() == b'{"setupComplete": {}}'  # read before the close
        with pytest.raises(ConnectionClosedError) as closed:
            await connection.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1008,
            "BidiGenerateContent session not found",
        )
        with pytest.raises(ConnectionClosedError):
            await connection.send(b"{}")


async def test_a_normal_close_is_connection_closed_ok() -> None:
    async def end(connection: ServerConnection) -> None:
        await connection.close(1000, "The operation was cancelled.")

    async with _server(end) as url:
        connection = await _open(url)
        with pytest.raises(ConnectionClosedOK) as closed:
            await connection.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.reason == "The operation was cancelled."


async def test_the_relays_close_code_and_reason_reach_the_upstream() -> None:
    received: asyncio.Future[tuple[int | None, str | None]] = asyncio.Future()

    async def wait_for_close(connection: ServerConnection) -> None:
        await connection.wait_closed()
        received.set_result((connection.close_code, connection.close_reason))

    async with _server(wait_for_close) as url:
        connection = await _open(url)
        await connection.close(1011, "client gone")
        await connection.close(1000, "again")  # idempotent
        assert await received == (1011, "client gone")


async def test_answered_pings_keep_the_connection_open() -> None:
    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with _server(echo) as url:
        connection = await _open(url, ping_interval=0.05, ping_timeout=0.2)
        await asyncio.sleep(0.6)  # several pings, each answered well within its timeout
        assert connection.state is State.OPEN
        await connection.send("still here")
        assert await connection.recv() == "still here"
        await connection.close()


async def test_an_unanswered_ping_fails_the_connection_1011() -> None:
    async with _deaf_server() as (url, _peers):
        connection = await _open(url, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.1)
        with pytest.raises(ConnectionClosedError) as closed:
            await connection.recv()
        assert closed.value.rcvd is None  # the upstream said nothing: the session sees 1006
        assert closed.value.sent is not None
        assert (closed.value.sent.code, closed.value.sent.reason) == (
            1011,
            "keepalive ping timeout",
        )


async def test_a_close_the_upstream_never_answers_ends_at_the_close_timeout() -> None:
    async with _deaf_server() as (url, _peers):
        connection = await _open(url, close_timeout=0.1)
        async with asyncio.timeout(10):  # a bound for a hung test, not a measurement
            await connection.close(1000, "bye")
        assert connection.state is State.CLOSED


async def test_a_slow_upstream_back_pressures_send_until_it_reads() -> None:
    chunk = b"x" * 65536
    async with _deaf_server() as (url, peers):
        connection = await _open(url)
        (peer,) = peers
        assert peer.transport is not None
        peer.transport.pause_reading()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(4096):  # 256 MiB: far more than socket buffers hold
                await connection.send(chunk)
                sent += 1

        sender = asyncio.ensure_future(flood())
        await asyncio.sleep(0.5)
        assert not sender.done()  # send waits instead of buffering everything
        stalled_at = sent
        await asyncio.sleep(0.2)
        assert sent == stalled_at
        peer.transport.resume_reading()
        async with asyncio.timeout(60):  # a bound for a hung test, not a measurement
            await sender
        assert sent == 4096
        connection.abort()


async def test_a_refused_upgrade_raises_invalid_status() -> None:
    from websockets.exceptions import InvalidStatus

    async def never(_connection: ServerConnection) -> None:  # pragma: no cover
        raise AssertionError

    async with serve(
        never,
        "127.0.0.1",
        0,
        process_request=lambda connection, _request: connection.respond(429, "slow down\n"),
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(InvalidStatus) as refused:
            await _open(f"ws://127.0.0.1:{port}/ws")
        assert refused.value.response.status_code == 429


async def test_a_recv_cancelled_as_its_message_arrives_leaves_it_for_the_next() -> None:
    go = asyncio.Event()

    async def send_one(connection: ServerConnection) -> None:
        await go.wait()
        await connection.send("one")
        await connection.wait_closed()

    async with _server(send_one) as url:
        connection = await _open(url)
        reader = asyncio.ensure_future(connection.recv())
        async with asyncio.timeout(10):  # a bound for a hung test, not a measurement
            while connection._recv_waiter is None:  # noqa: ASYNC110 (one loop step at a time)
                await asyncio.sleep(0)
            waiter = connection._recv_waiter
            go.set()
            # Cancel the reader in the loop iteration its message is handed to it, before it
            # runs: the test task was queued to run before the reader's wake-up.
            while not waiter.done():  # noqa: ASYNC110 (one loop step at a time)
                await asyncio.sleep(0)
        assert not reader.done()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert await connection.recv() == "one"
        await connection.close()


async def test_a_reader_that_falls_behind_stops_reading_from_the_upstream() -> None:
    chunk = b"y" * 65536
    total = 1024  # 64 MiB: far more than socket buffers hold
    sent = 0
    done = asyncio.Event()

    async def flood(connection: ServerConnection) -> None:
        nonlocal sent
        for _ in range(total):
            await connection.send(chunk)  # waits while the relay's side reads nothing
            sent += 1
        done.set()
        await connection.wait_closed()

    async with _server(flood) as url:
        connection = await _open(url)
        await asyncio.sleep(0.5)
        assert not done.is_set()  # the relay stopped reading instead of queueing everything
        stalled_at = sent
        await asyncio.sleep(0.2)
        assert sent == stalled_at
        async with asyncio.timeout(60):  # a bound for a hung test, not a measurement
            for _ in range(total):
                assert await connection.recv() == chunk
        assert done.is_set()
        await connection.close()
