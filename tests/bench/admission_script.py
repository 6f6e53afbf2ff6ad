"""What one admission costs Redis: `acquire.lua` timed by the server, against how many leases
the project already holds, with and without a per-user session cap.

The per-user check reads the user's own sorted set of leases (ZCARD), so with or without a
per-user cap an admission is O(log n) in the project's live sessions (before issue 15 it
decoded the JSON details of every lease: 12.9 ms at 5000 leases). Redis's own
`INFO commandstats` gives the microseconds per call, free of network and client time; the
client-side round trip is shown beside it.

    python -m tests.bench.admission_script                 # 0, 100, 1000, 5000 leases
    python -m tests.bench.admission_script --leases 0,400 --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore
from app.quota.types import Lease, QuotaLimits
from tests.support.redis_server import RedisServer

PROJECT = "bench"
TTL_SECONDS = 600.0


async def measure(
    url: str, leases: int, calls: int, per_user_cap: int | None
) -> tuple[float, float]:
    """Redis µs per acquire and client round-trip µs per acquire, with `leases` already held
    by as many users (`calls` more sessions are admitted, one after the other)."""
    limits = QuotaLimits(max_sessions=leases + calls + 10, max_sessions_per_user=per_user_cap)
    store = RedisQuotaStore(connect_redis(url), key_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    admin = Redis.from_url(url)
    try:
        for index in range(leases):
            lease = Lease(PROJECT, f"user-{index}", f"held-{index}", time.time())
            assert await store.acquire(lease, limits, TTL_SECONDS) is None
        await store.acquire(Lease(PROJECT, "warm-up", "warm-up", time.time()), limits, 1.0)
        await admin.config_resetstat()
        measured = [Lease(PROJECT, f"new-{i}", f"new-{i}", time.time()) for i in range(calls)]
        started = time.perf_counter()
        for lease in measured:
            assert await store.acquire(lease, limits, TTL_SECONDS) is None
        round_trip_us = 1e6 * (time.perf_counter() - started) / calls
        stats = await admin.info("commandstats")
        server_us = float(stats["cmdstat_evalsha"]["usec"]) / calls
        return server_us, round_trip_us
    finally:
        await admin.aclose()
        await store.aclose()


async def main_async(leases: list[int], calls: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory))
        redis.start()
        try:
            print("| leases held | per-user cap | Redis µs / acquire | client µs / round trip |")
            print("|---:|---|---:|---:|")
            for held in leases:
                for cap in (None, 1000):
                    server_us, client_us = await measure(redis.url, held, calls, cap)
                    print(
                        f"| {held} | {'none' if cap is None else cap} | {server_us:.1f} "
                        f"| {client_us:.0f} |"
                    )
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", default="0,100,1000,5000")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main_async([int(n) for n in args.leases.split(",")], args.calls))


if __name__ == "__main__":
    main()
