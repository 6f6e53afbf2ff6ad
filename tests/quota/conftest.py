"""The contract suite's backends: every test taking `backend` runs on each store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from app.quota.memory import MemoryQuotaStore
from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore, quota_key
from app.quota.types import QuotaStore
from tests.support.redis_server import RedisServer

KEY_PREFIX = "test-relay"


@dataclass
class Backend:
    """A store under test, plus what a test needs around it."""

    name: str
    store: QuotaStore
    replica: Callable[[], QuotaStore]
    """Another store on the same data, as a second relay replica would have."""
    make_tokens_older: Callable[[str, int], Awaitable[None]]
    """Move a project's charged tokens `seconds` into the past: the window slides without
    waiting a minute."""


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield _memory_backend()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with _RedisBackend(server.url) as redis_backend:
        yield redis_backend


def _memory_backend() -> Backend:
    offset = 0.0

    def clock() -> float:
        return time.time() + offset

    async def make_tokens_older(project: str, seconds: int) -> None:
        # One clock for the whole store: leases age too, which the window tests do not mind.
        nonlocal offset
        offset += seconds

    store = MemoryQuotaStore(clock=clock)
    return Backend("memory", store, lambda: store, make_tokens_older)


class _RedisBackend:
    def __init__(self, url: str) -> None:
        self.url = url
        self.stores: list[RedisQuotaStore] = []
        self.raw: Redis = Redis.from_url(url, decode_responses=True)

    def open_store(self) -> RedisQuotaStore:
        store = RedisQuotaStore(connect_redis(self.url), key_prefix=KEY_PREFIX)
        self.stores.append(store)
        return store

    async def make_tokens_older(self, project: str, seconds: int) -> None:
        """Rewrite the project's buckets (unix second -> tokens) `seconds` earlier."""
        key = quota_key(KEY_PREFIX, project, "tokens")
        buckets = await self.raw.hgetall(key)
        await self.raw.delete(key)
        if buckets:
            older = [(int(second) - seconds, int(tokens)) for second, tokens in buckets.items()]
            await self.raw.hset(key, items=[value for bucket in older for value in bucket])
        # The sessions' spend (the "shed" policy) ages with the buckets: its log and index.
        log_key = quota_key(KEY_PREFIX, project, "spend_log")
        index_key = quota_key(KEY_PREFIX, project, "spend_index")
        entries = await self.raw.hgetall(log_key)
        await self.raw.delete(log_key, index_key)
        for entry, tokens in entries.items():
            second, session_id = str(entry).split("|", 1)  # decode_responses: already a str
            moved = f"{int(second) - seconds}|{session_id}"
            await self.raw.hset(log_key, moved, tokens)
            await self.raw.zadd(index_key, {moved: int(second) - seconds})

    async def __aenter__(self) -> Backend:
        return Backend("redis", self.open_store(), self.open_store, self.make_tokens_older)

    async def __aexit__(self, *exc_info: object) -> None:
        for store in self.stores:
            await store.aclose()
        await self.raw.aclose()
