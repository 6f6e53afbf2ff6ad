"""Serve an ASGI app with a real uvicorn in the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[int]:
    """Run uvicorn with `config` (its port is ignored: a free one is bound) until the block
    ends; yield the port."""
    config.port = 0
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
