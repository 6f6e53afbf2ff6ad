"""The client leg's queue of ASGI receive events, with only what uvicorn's WebSocket protocol
asks of it: `put_nowait`, `get` and `empty`.

uvicorn gives every connection an `asyncio.Queue`: 12 objects and 3.3 KB of a held session
(getters, putters, the `Event` behind `join()`, and a deque that stays allocated), for a queue
one task reads and that holds a message at a time (the protocol pauses reading while one is
queued, and the fast lane takes a running session's frames without it). This one is a deque
made when a message comes and dropped when it is taken, and at most one waiting reader:
Starlette's `receive()` has one caller, and a second at once is refused, not left hanging.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class ReceiveQueue:
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("a second reader waits on the client connection")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        item = items.popleft()
        if not items:
            self._items = None
        return item
