"""The client leg's receive queue (app/relay/client/receive_queue.py): what uvicorn's protocol
and Starlette's `receive()` rely on of an asyncio.Queue."""

from __future__ import annotations

import asyncio

import pytest

from app.relay.client.receive_queue import ReceiveQueue


async def test_messages_come_out_in_order_and_a_waiting_reader_is_woken() -> None:
    queue = ReceiveQueue()
    assert queue.empty()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    queue.put_nowait({"n": 1})
    queue.put_nowait({"n": 2})
    assert await reader == {"n": 1}
    assert not queue.empty()
    assert await queue.get() == {"n": 2}
    assert queue.empty()


async def test_a_cancelled_reader_loses_nothing() -> None:
    queue = ReceiveQueue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("message")  # wakes the reader, which is cancelled before it runs
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await asyncio.wait_for(queue.get(), 1) == "message"


async def test_a_second_reader_at_once_is_refused_not_left_waiting() -> None:
    queue = ReceiveQueue()
    first = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="second reader"):
        await queue.get()
    queue.put_nowait("for the first")
    assert await first == "for the first"
