"""Script calls made at about the same moment, sent to Redis together in one pipeline.

A reconnect storm asks for hundreds of admissions at once. Sent one per pooled connection,
they queue for the pool (64 connections) and, past its wait, count as a store outage although
Redis is up; each also costs a round trip and, on a cold pool, a new connection. Coalesced,
the calls made while `MAX_IN_FLIGHT` pipelines are out wait, and go out together as one
pipeline on one connection when one is answered: a storm of 2000 admissions is a few dozen
round trips on a handful of connections. A call made while nothing waits goes out at once,
from its caller's task: off-storm, an admission waits for Redis and nothing else.

What each call keeps of its own:

- its result or its error (a script error fails that call only; a broken connection fails
  the calls of that pipeline, each raising as a lone call would);
- its deadline: a call still queued `queue_timeout` seconds after it was made fails with
  `redis.exceptions.TimeoutError`, as a lone call waiting for the pool would, instead of
  waiting for a stalled Redis behind earlier pipelines. Once sent, its pipeline has the
  client's command timeout, like a lone call: at most twice the timeout in all;
- its order within a pipeline: calls are queued and sent in the order they were made.
  Pipelines in flight together may reach Redis in either order, as lone calls on separate
  connections would; acquire and release of one session are right in either order anyway
  (the release mark, see keeper.py).

A call cancelled before its pipeline is sent is dropped; once sent it runs, as a lone call
whose reply is no longer awaited would.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_BATCH = 256
"""Calls per pipeline. Redis runs a pipeline's scripts back to back (an admission is ~50 µs of
its time), so a larger batch would only make the calls behind it wait longer for their reply."""
MAX_IN_FLIGHT = 4
"""Pipelines awaiting their reply at once. While they are out, new calls gather into the next
batch; this bounds the pool connections coalesced calls use, far below its size."""


@dataclass
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[str | int]
    deadline: float
    future: asyncio.Future[Any]


class ScriptCoalescer:
    """Runs `script(keys, args)` calls on `client` in shared pipelines (one Redis server, or
    the master Sentinel found: redis-py refuses scripts in Cluster pipelines)."""

    def __init__(
        self,
        client: Redis,
        *,
        queue_timeout: float,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._client = client
        self._queue_timeout = queue_timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[_Call] = deque()
        self._in_flight = 0  # pipelines sent and not yet answered (a lone call is one)
        self._pipeline_tasks: set[asyncio.Task[None]] = set()  # kept referenced
        self._gathering = False  # a pipeline task is about to take the queue
        self._deadline_timer: asyncio.TimerHandle | None = None

    async def call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """What `script(keys=keys, args=args)` returns, or raises."""
        loop = asyncio.get_running_loop()
        call = _Call(
            script, keys, args, time.monotonic() + self._queue_timeout, loop.create_future()
        )
        if not self._queue and self._in_flight < self._max_in_flight:
            # Nothing waits: send it now from the caller's task, a pipeline of one. A task
            # would cost a pass of the loop; calls made while this one is out gather into the
            # next batch.
            return await self._send_lone(call)
        self._queue.append(call)
        if not self._gathering and self._in_flight < self._max_in_flight:
            self._start_pipeline()
        return await call.future

    async def _send_lone(self, call: _Call) -> Any:
        self._in_flight += 1
        try:
            [result] = await self._execute([call])
        finally:
            self._in_flight -= 1
            self._next_pipeline()
        if isinstance(result, Exception):
            raise result
        return result

    def _start_pipeline(self) -> None:
        """A pipeline task for the queue. It takes its batch when it first runs, in the next
        loop iteration: calls made by the other tasks that are ready now join it. (One task,
        not a `call_soon` that then makes one: each hop waits a whole loop iteration, and on a
        busy loop that is milliseconds of every admission.)"""
        self._gathering = True
        self._in_flight += 1
        task = asyncio.create_task(self._send_queued(), name="quota-pipeline")
        self._pipeline_tasks.add(task)
        task.add_done_callback(self._sent)

    async def _send_queued(self) -> None:
        self._gathering = False
        now = time.monotonic()
        batch: list[_Call] = []
        while self._queue and len(batch) < self._max_batch:
            call = self._queue.popleft()
            if call.future.done():  # cancelled while queued: never sent
                continue
            if call.deadline <= now:
                _time_out(call)
                continue
            batch.append(call)
        if self._queue:
            if self._in_flight < self._max_in_flight:
                self._start_pipeline()  # more than one batch is waiting
            else:
                self._watch_deadlines(now)
        if batch:
            await self._send(batch)

    def _watch_deadlines(self, now: float) -> None:
        """While calls wait for a free pipeline slot, fail each when its deadline passes."""
        if self._queue and self._deadline_timer is None:
            delay = max(0.0, self._queue[0].deadline - now)
            self._deadline_timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._deadline_timer = None
        now = time.monotonic()
        # Deadlines are in queue order: every call has the same timeout.
        while self._queue and self._queue[0].deadline <= now:
            call = self._queue.popleft()
            if not call.future.done():
                _time_out(call)
        self._watch_deadlines(now)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._pipeline_tasks.discard(task)
        self._in_flight -= 1
        self._next_pipeline()

    def _next_pipeline(self) -> None:
        """A pipeline was answered: send the calls that gathered meanwhile."""
        if self._queue and not self._gathering and self._in_flight < self._max_in_flight:
            self._start_pipeline()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
        except asyncio.CancelledError:  # the loop is shutting down
            for call in batch:
                call.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  # each waiting call gets the error, whatever it is
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        for call, result in zip(batch, results, strict=True):
            if call.future.done():
                continue
            if isinstance(result, Exception):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        results = await self._pipeline(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # Redis restarted and forgot the scripts: load each once, run those calls again.
            scripts = {batch[i].script.sha: batch[i].script for i in missing}
            for script in scripts.values():
                script.sha = await self._client.script_load(script.script)
            again = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            return await pipe.execute(raise_on_error=False)


def _time_out(call: _Call) -> None:
    call.future.set_exception(
        RedisTimeoutError("no pipeline to Redis was free in time: Redis answers too slowly")
    )
