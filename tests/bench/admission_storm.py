"""N admissions at once through the real `QuotaKeeper` and `RedisQuotaStore`, against a real
redis-server: what a freshly started replica does when every client comes back together.

Each run starts a keeper on a fresh store (a fresh pool: what a restarted replica has), then
calls `admit` N times concurrently and times each call. Reported per N: the wall time until
all are answered, p50/p99 of one admission, the CPU this (client) process spent per admission
(`time.process_time`, so Redis's own work is not in it), how many were refused and why, and
how many connections the client opened to Redis (`CLIENT LIST`). By default every session
has one of 50 users and the project a per-user cap, so the per-user check is in every
admission; `--no-users` leaves it out (API-key sessions), to see the connection pool alone.

    python -m tests.bench.admission_storm                   # N = 100, 500, 2000
    python -m tests.bench.admission_storm --sessions 300 --runs 3 --no-users

Read the numbers with the machine's load average (printed): redis-server, this process and
whatever else runs share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from app.quota.keeper import QuotaKeeper
from app.quota.redis_connection import connect_redis
from app.quota.redis_store import RedisQuotaStore
from app.quota.types import Lease, QuotaLimits
from app.settings import load_settings
from tests.support.redis_server import RedisServer

PROJECT = "storm"
USERS = 50
"""Sessions are spread over this many users, each capped well above its share."""


@dataclass(frozen=True)
class StormResult:
    sessions: int
    wall_ms: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_admission: float
    refusals: Counter[str]
    connections: int

    def row(self) -> str:
        refused = ", ".join(f"{kind} {n}" for kind, n in sorted(self.refusals.items())) or "0"
        return (
            f"| {self.sessions} | {self.wall_ms:.0f} | {self.p50_ms:.1f} | {self.p99_ms:.1f} "
            f"| {self.cpu_ms_per_admission:.3f} | {refused} | {self.connections} |"
        )


async def storm(url: str, sessions: int, *, users: bool) -> StormResult:
    limits = QuotaLimits(
        max_sessions=sessions + 10,
        max_sessions_per_user=sessions if users else None,
        tokens_per_minute=10**9,
    )
    store = RedisQuotaStore(connect_redis(url), key_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    keeper = QuotaKeeper(store, load_settings(lease_ttl_seconds=600))
    admin = Redis.from_url(url, decode_responses=True)
    try:
        await keeper.start()
        leases = [
            Lease(PROJECT, f"user-{i % USERS}" if users else None, f"s-{i}", time.time())
            for i in range(sessions)
        ]
        latencies: list[float] = []
        refusals: Counter[str] = Counter()

        async def admit(lease: Lease) -> None:
            started = time.perf_counter()
            refusal = await keeper.admit(lease, limits)
            latencies.append(time.perf_counter() - started)
            if refusal is not None:
                refusals[refusal.kind] += 1

        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.gather(*(admit(lease) for lease in leases))
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        clients = await admin.client_list()
        latencies.sort()
        return StormResult(
            sessions=sessions,
            wall_ms=wall * 1000,
            p50_ms=statistics.median(latencies) * 1000,
            p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            cpu_ms_per_admission=cpu * 1000 / sessions,
            refusals=refusals,
            connections=len(clients) - 1,  # the admin connection is not the keeper's
        )
    finally:
        await keeper.aclose()
        await store.aclose()
        await admin.aclose()


async def main_async(sizes: list[int], runs: int, *, users: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory))
        redis.start()
        try:
            load = " / ".join(f"{n:.2f}" for n in os.getloadavg())
            cap = f"{USERS} users, per-user cap" if users else "no users (no per-user check)"
            print(f"load average {load}; {cap}\n")
            print(
                "| admissions at once | wall ms to admit all | p50 ms | p99 ms "
                "| client CPU ms / admission | refused | connections opened |"
            )
            print("|---:|---:|---:|---:|---:|---|---:|")
            for size in sizes:
                for _ in range(runs):
                    print((await storm(redis.url, size, users=users)).row(), flush=True)
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,500,2000")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-users", action="store_true", help="sessions without a user")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sessions.split(",")]
    asyncio.run(main_async(sizes, args.runs, users=not args.no_users))


if __name__ == "__main__":
    main()
