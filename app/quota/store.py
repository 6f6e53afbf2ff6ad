"""Choosing the quota store from settings."""

from __future__ import annotations

from app.quota.memory import MemoryQuotaStore
from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore
from app.quota.types import QuotaStore
from app.settings import Settings


def open_quota_store(settings: Settings) -> QuotaStore:
    """Redis when `RELAY_REDIS_URL` is set (shared by replicas), else this process's memory.

    Nothing is sent to Redis yet: an unreachable Redis shows at the first quota check (and in
    `QuotaKeeper.store_healthy`), it does not stop the relay from starting.
    """
    if settings.redis_url is None:
        return MemoryQuotaStore()
    connection = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
    return RedisQuotaStore(connection, key_prefix=settings.quota_key_prefix)
