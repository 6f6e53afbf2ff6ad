"""Serve an ASGI app with a real uvicorn in the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from app.relay.client.bounded_protocols import BoundedHttpProtocol, BoundedWebSocketProtocol


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[int]:
    """Run uvicorn with `config` (its port is ignored: a free one is bound) until the block
    ends; yield the port. Whatever `config` says, the protocols are the relay's production ones
    (uvicorn's with every wait on a client bounded), so tests see what clients will see."""
    config.port = 0
    config.http = BoundedHttpProtocol
    config.ws = BoundedWebSocketProtocol
    sock = config.bind_socket()
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("uvicorn stopped before it started") from task.exception()
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()
