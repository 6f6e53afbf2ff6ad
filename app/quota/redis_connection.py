"""Pooled `redis.asyncio` clients for the three ways to deploy Redis: one server, Sentinel, Cluster.

    redis://[[user]:password@]host:port/db          one server (rediss:// for TLS)
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
                                                    Sentinel (rediss+sentinel:// for TLS);
                                                    credentials and TLS apply to sentinels and
                                                    master alike
    redis://host:port with RELAY_REDIS_CLUSTER=true Cluster (any node; the rest is discovered)

Quota checks sit on the path of every new session, so an unreachable Redis must fail fast: the
defaults below bound every command to seconds instead of redis-py's patient retries. Options in
the query string of a redis:// URL (e.g. `?socket_timeout=5`) override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Sentinel URL scheme -> whether connections use TLS."""
DEFAULT_SENTINEL_PORT = 26379
POOL_SIZE = 64
"""Connections to one Redis per relay process: plenty for one heartbeat and session churn."""
POOL_WAIT_SECONDS = 2.0
"""How long a command waits for a free pooled connection before the store counts as down.
Admissions do not queue for the pool: they share pipelines (`app.quota.coalesce`)."""
COMMAND_TIMEOUT_SECONDS = 2.0
"""How long a command waits for Redis's answer (and a coalesced call for its pipeline)."""
WARM_CONNECTIONS = 16
"""Connections the quota keeper opens at start-up: the coalesced pipelines (4 at a time), the
heartbeat and the export of usage, with room; the pool opens more if ever needed."""


def _client_options() -> dict[str, Any]:
    return {
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "socket_connect_timeout": 2.0,
        # No CLIENT SETINFO on connect: redis-py's default looks its own version up in
        # importlib.metadata for every new connection (0.6 ms of CPU each) and spends two round
        # trips telling Redis; nothing here reads it.
        "driver_info": None,
        # RESP2, as redis-py before 8: RESP3 (redis-py 8's default) costs every new connection
        # a HELLO round trip and the maintenance-notifications handshake (an error and a
        # retry-free warning path on servers without it). Opening 200 connections one after
        # the other, CPU per connection: 3.1 ms by default, 0.85-1.3 ms without SETINFO,
        # 0.32 ms with RESP2 too (load ~4). The scripts' replies are the same in both.
        "protocol": 2,
        # One immediate retry replaces a pooled connection that a Redis restart broke; more
        # would only delay the refusal a client gets while Redis is down.
        "retry": Retry(NoBackoff(), retries=1),
        "decode_responses": True,
    }


@dataclass(frozen=True)
class RedisConnection:
    """The client quota scripts run on, and the Sentinel it was found through, if any."""

    client: Redis | RedisCluster
    sentinel: Sentinel | None = None
    sentinel_clients: tuple[Redis, ...] = ()
    """The Sentinel's clients, one per sentinel, as it was made. redis-py 8.1's
    `discover_master` reorders `Sentinel.sentinels` after an await: two discoveries at once
    (a failover while several connections reconnect) can leave a client twice in the list and
    another not at all, and `Sentinel.aclose` then never closes that one's connections."""

    async def aclose(self) -> None:
        await self.client.aclose()
        for sentinel_client in self.sentinel_clients:
            await sentinel_client.aclose()


def connect_redis(
    url: str,
    *,
    cluster: bool = False,
    pool_size: int = POOL_SIZE,
    pool_wait: float = POOL_WAIT_SECONDS,
) -> RedisConnection:
    """A connection for `url` (nothing is sent until the first command); ValueError if bad.
    `pool_size` and `pool_wait` apply to one server (a Sentinel or Cluster client pools per
    node, without a bound)."""
    scheme = urlsplit(url).scheme
    if scheme in SENTINEL_SCHEMES:
        if cluster:
            raise ValueError("RELAY_REDIS_CLUSTER cannot be combined with a Sentinel URL")
        return _connect_sentinel(url)
    if scheme not in ("redis", "rediss"):
        raise ValueError(
            f"RELAY_REDIS_URL must start with redis://, rediss:// or redis+sentinel://, "
            f"not {scheme}://"
        )
    if cluster:
        return RedisConnection(RedisCluster.from_url(url, **_client_options()))
    # A blocking pool: when hundreds of sessions start or end together, commands wait a moment
    # for a pooled connection instead of failing as if Redis were down ("Too many connections").
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=pool_wait, **_client_options()
    )
    return RedisConnection(Redis.from_pool(pool))


def _connect_sentinel(url: str) -> RedisConnection:
    parts = urlsplit(url)
    if parts.query:
        raise ValueError("a redis+sentinel:// URL takes no query options")
    path = [segment for segment in parts.path.split("/") if segment]
    if len(path) not in (1, 2) or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(
            "a redis+sentinel:// URL names the service and optionally the db: "
            "redis+sentinel://host:26379,host2:26379/mymaster/0"
        )
    _, _, hosts = parts.netloc.rpartition("@")
    auth: dict[str, Any] = {}
    if parts.username:
        auth["username"] = unquote(parts.username)
    if parts.password:
        auth["password"] = unquote(parts.password)
    if SENTINEL_SCHEMES[parts.scheme]:
        auth["ssl"] = True
    options = _client_options()
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        [_host_and_port(host) for host in hosts.split(",")],
        sentinel_kwargs={**options, **auth},
        **options,
        **auth,
    )
    master = sentinel.master_for(path[0], db=int(path[1]) if len(path) == 2 else 0)
    return RedisConnection(master, sentinel, tuple(sentinel.sentinels))


def _host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, DEFAULT_SENTINEL_PORT
    if not port.isdigit():
        raise ValueError(f"bad sentinel address {address!r}: expected host:port")
    return host.strip("[]"), int(port)
