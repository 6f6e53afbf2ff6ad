"""Clients that stop reading: a phone in a tunnel, a frozen tab.

A stalled client opens a session, asks for a lot of output (the echo emulator answers every
audio chunk with the same bytes), then reads nothing more, with a tiny receive buffer so that
the relay's writes back up quickly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect

from tests.relay.conftest import MODEL, auth_headers

T = TypeVar("T")

CHUNK = json.dumps(
    {
        "realtimeInput": {
            "audio": {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(bytes(48_000)).decode(),
            }
        }
    }
)
# 1.5 MiB/s: under the default input limit of 2 MiB/s per session, which would end it.
CHUNK_INTERVAL = len(CHUNK) / (1.5 * 1024 * 1024)


@dataclass
class StalledClient:
    ws: ClientConnection
    pumping: asyncio.Task[None]

    async def discard(self) -> None:
        self.pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.pumping
        self.ws.transport.abort()


async def open_session(url: str, *, receive_buffer: int | None = None) -> ClientConnection:
    """A session past setupComplete; `receive_buffer` shrinks the client's socket buffer."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(
        url,
        sock=sock,
        additional_headers=auth_headers(),
        compression=None,
        max_queue=1,  # the client library stops reading from the socket once one frame waits
        ping_interval=None,
    )
    await ws.send(json.dumps({"setup": {"model": MODEL}}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    return ws


async def stalled_client(url: str, chunks: int = 128) -> StalledClient:
    """A session whose client sends `chunks` audio chunks and never reads again."""
    ws = await open_session(url, receive_buffer=4096)

    async def pump() -> None:
        with contextlib.suppress(Exception):
            for _ in range(chunks):
                await ws.send(CHUNK)
                await asyncio.sleep(CHUNK_INTERVAL)

    return StalledClient(ws, asyncio.create_task(pump()))


# Sessions are opened in batches: a burst over RELAY_MAX_PENDING_ADMISSIONS_PER_CREDENTIAL
# (16) connections with one key is refused 429, as it should be.
BATCH = 8


async def in_batches(count: int, open_one: Callable[[], Awaitable[T]]) -> list[T]:
    opened: list[T] = []
    while len(opened) < count:
        batch = min(BATCH, count - len(opened))
        opened += await asyncio.gather(*(open_one() for _ in range(batch)))
    return opened
