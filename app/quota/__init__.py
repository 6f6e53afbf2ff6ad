"""Per-project quotas: concurrent sessions held as leases, and tokens per sliding minute.

`open_quota_store(settings)` picks the store (Redis or this process's memory); one
`QuotaKeeper` per process wraps it with the policy the relay needs (heartbeat, fail-closed or
fail-open, writes retried after an outage). Operators' view: docs/quotas.md.
"""

from app.quota.keeper import QuotaKeeper
from app.quota.memory import MemoryQuotaStore
from app.quota.redis_store import RedisQuotaStore
from app.quota.store import open_quota_store
from app.quota.types import (
    WINDOW_SECONDS,
    Lease,
    QuotaLimits,
    QuotaStore,
    QuotaStoreError,
    Refusal,
    Renewal,
    TokenWindow,
)

__all__ = [
    "WINDOW_SECONDS",
    "Lease",
    "MemoryQuotaStore",
    "QuotaKeeper",
    "QuotaLimits",
    "QuotaStore",
    "QuotaStoreError",
    "RedisQuotaStore",
    "Refusal",
    "Renewal",
    "TokenWindow",
    "open_quota_store",
]
