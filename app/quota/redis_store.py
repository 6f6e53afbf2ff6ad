"""Quotas in Redis, exact however many relay replicas share it.

Every decision is one Lua script (`lua/*.lua`, each headed by its KEYS, ARGV and result), so
checking a limit and recording a lease cannot interleave with another replica doing the same.
Scripts use the Redis server's clock, never the replica's. Each script touches the keys of one
project only, and those keys share the `{project}` hash tag: one slot in a Redis Cluster.

Calls that a storm makes by the hundred (acquire, release, token charges and uses) go through
a `ScriptCoalescer`: those pending at one moment share one pipeline (one server or Sentinel;
on a Cluster, redis-py refuses scripts in pipelines and each call goes on its own).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from app.quota.coalesce import ScriptCoalescer
from app.quota.redis_connection import COMMAND_TIMEOUT_SECONDS, WARM_CONNECTIONS, RedisConnection
from app.quota.refusals import (
    ALREADY_RELEASED,
    sessions_refusal,
    tokens_refusal,
    user_sessions_refusal,
)
from app.quota.types import (
    WINDOW_SECONDS,
    Lease,
    LostSlot,
    QuotaLimits,
    QuotaStoreError,
    Refusal,
    Renewal,
    TokenWindow,
)

KeyKind = Literal[
    "leases",
    "details",
    "tokens",
    "released",
    "counted",
    "provisional",
    "uses",
    "spend",
    "spend_log",
    "spend_index",
    "shed",
]
ScriptCall = tuple[list[str], list[str | int]]
"""KEYS and ARGV of one script run."""


def quota_key(prefix: str, scope: str, kind: KeyKind) -> str:
    """The one place Redis keys are named: `<prefix>:{<scope>}:<kind>`.

    `scope` (a project, or the key of a use counter) is the Cluster hash tag; braces in it are
    escaped, or a `}` in a project name would end the tag early and split its keys across slots.
    """
    return f"{_tagged(prefix, scope)}:{kind}"


def user_key(prefix: str, project: str, user: str) -> str:
    """The sorted set of one user's leases in `project`, `<prefix>:{<project>}:user:<user>`:
    the project's hash tag, so it lives in the project's Cluster slot. The user id comes last,
    so no id can name another key."""
    return f"{_tagged(prefix, project)}:user:{user}"


def counter_key(prefix: str, project: str, name: str) -> str:
    """A budget counter of `project`, `<prefix>:{<project>}:counter:<name>`: in the project's
    Cluster slot; `name` comes last (it may end with a user id), so it cannot name another key."""
    return f"{_tagged(prefix, project)}:counter:{name}"


def _tagged(prefix: str, scope: str) -> str:
    tag = scope.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{prefix}:{{{tag}}}"


def load_script(name: str) -> str:
    """`lua/<name>.lua` with the helpers of `lua/common.lua` in front."""
    lua = resources.files(__package__).joinpath("lua")
    return lua.joinpath("common.lua").read_text() + "\n" + lua.joinpath(f"{name}.lua").read_text()


@contextmanager
def _store_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, RedisClusterException) as exc:
        raise QuotaStoreError(f"quota store: {action} failed: {exc}") from exc


class RedisQuotaStore:
    """`QuotaStore` on Redis (one server, Sentinel or Cluster: see `connect_redis`)."""

    def __init__(self, connection: RedisConnection, *, key_prefix: str) -> None:
        self._connection = connection
        self._client = connection.client
        self._prefix = key_prefix
        # register_script runs EVALSHA and reloads the script on NOSCRIPT, so a Redis that
        # restarted and forgot its scripts costs one extra round trip, not an error.
        self._acquire = self._client.register_script(load_script("acquire"))
        self._renew = self._client.register_script(load_script("renew"))
        self._release = self._client.register_script(load_script("release"))
        self._tokens = self._client.register_script(load_script("tokens"))
        self._sessions = self._client.register_script(load_script("sessions"))
        self._held = self._client.register_script(load_script("held"))
        self._consume_use = self._client.register_script(load_script("consume_use"))
        self._counters = self._client.register_script(load_script("counters"))
        self._coalescer = (
            None
            if isinstance(self._client, RedisCluster)
            else ScriptCoalescer(self._client, queue_timeout=_command_timeout(self._client))
        )

    async def acquire(
        self, lease: Lease, limits: QuotaLimits, ttl: float, *, provisional: bool = False
    ) -> Refusal | None:
        user_cap = limits.max_sessions_per_user
        with _store_errors("acquire"):
            result = await self._call(
                self._acquire,
                self._lease_keys(
                    lease, "leases", "details", "tokens", "released", "counted", "provisional"
                ),
                [
                    lease.session_id,
                    _details(lease),
                    lease.user or "",
                    _milliseconds(ttl),
                    limits.max_sessions,
                    -1 if lease.user is None or user_cap is None else user_cap,
                    limits.tokens_per_minute,
                    WINDOW_SECONDS,
                    1 if provisional else 0,
                ],
            )
        match result:
            case ["ok"]:
                return None
            case ["released", *_]:
                return ALREADY_RELEASED
            case ["tokens", _, limit, ms_until_free]:
                return tokens_refusal(lease.project, int(limit), int(ms_until_free) / 1000)
            case ["sessions", held, limit, ms_until_lapse, starting]:
                return sessions_refusal(
                    lease.project, int(held), int(limit), int(starting), _lapse(int(ms_until_lapse))
                )
            case ["user_sessions", held, limit, ms_until_lapse, starting] if lease.user is not None:
                return user_sessions_refusal(
                    lease.user, int(held), int(limit), int(starting), _lapse(int(ms_until_lapse))
                )
        raise QuotaStoreError(f"quota store: unexpected answer from acquire.lua: {result!r}")

    async def renew(
        self, leases: Sequence[Lease], limits: Mapping[str, QuotaLimits], ttl: float
    ) -> Renewal:
        by_project: dict[str, list[Lease]] = {}
        for lease in sorted(leases, key=lambda lease: lease.started_at):
            by_project.setdefault(lease.project, []).append(lease)
        calls: list[ScriptCall] = []
        for project, project_leases in by_project.items():
            project_limits = limits[project]
            user_cap = project_limits.max_sessions_per_user
            keys = self._project_keys(
                project, "leases", "details", "released", "counted", "provisional"
            )
            user_keys: dict[str, int] = {}  # user -> its key's index in KEYS (from 1, as Lua)
            args: list[str | int] = [
                _milliseconds(ttl),
                project_limits.max_sessions,
                -1 if user_cap is None else user_cap,
            ]
            for lease in project_leases:
                index = 0
                if lease.user is not None:
                    if lease.user not in user_keys:
                        keys.append(user_key(self._prefix, project, lease.user))
                        user_keys[lease.user] = len(keys)
                    index = user_keys[lease.user]
                args += [lease.session_id, _details(lease), lease.user or "", index]
            calls.append((keys, args))
        with _store_errors("renew"):
            results = await self._pipelined(self._renew, calls)
        by_id = {lease.session_id: lease for lease in leases}
        return Renewal(
            restored=sum(int(restored) for restored, *_ in results),
            over_cap=tuple(
                LostSlot(by_id[str(left_out)], _full_cap(full))
                for _, *left in results
                for left_out, full in zip(left[::2], left[1::2], strict=True)
            ),
        )

    async def release(self, lease: Lease, ttl: float) -> None:
        with _store_errors("release"):
            await self._call(
                self._release,
                self._lease_keys(lease, "leases", "details", "released", "counted", "provisional"),
                [lease.session_id, _milliseconds(ttl)],
            )

    async def charge(
        self, project: str, tokens: int, limits: QuotaLimits, *, session_id: str | None = None
    ) -> TokenWindow:
        if tokens < 0:
            raise ValueError(f"cannot charge a negative number of tokens ({tokens})")
        return await self._token_window(project, tokens, limits, session_id)

    async def window(self, project: str, limits: QuotaLimits) -> TokenWindow:
        return await self._token_window(project, 0, limits)

    async def sessions(self, project: str) -> list[Lease]:
        with _store_errors("sessions"):
            flat = await self._call(
                self._sessions, self._project_keys(project, "leases", "details", "counted"), []
            )
        leases = []
        for session_id, details_json in zip(flat[::2], flat[1::2], strict=True):
            details = json.loads(details_json)
            leases.append(Lease(project, details["user"], session_id, details["started_at"]))
        return sorted(leases, key=lambda lease: lease.started_at)

    async def held(self, project: str) -> int:
        with _store_errors("held"):
            return int(
                await self._call(
                    self._held, self._project_keys(project, "leases", "details", "counted"), []
                )
            )

    async def consume_use(self, key: str, max_uses: int, expires_at: float) -> int | None:
        with _store_errors("consume_use"):
            left = int(
                await self._call(
                    self._consume_use,
                    [quota_key(self._prefix, key, "uses")],
                    [max_uses, _milliseconds(expires_at)],
                )
            )
        return None if left < 0 else left

    async def add_to_counters(
        self, scope: str, counters: Sequence[tuple[str, int, float]]
    ) -> list[int]:
        keys = [counter_key(self._prefix, scope, name) for name, _, _ in counters]
        args: list[str | int] = []
        for _, amount, expires_at in counters:
            if amount < 0:
                raise ValueError(f"cannot add a negative amount ({amount})")
            args += [amount, _milliseconds(expires_at)]
        with _store_errors("counters"):
            values = await self._call(self._counters, keys, args)
        return [int(value) for value in values]

    async def ping(self) -> None:
        with _store_errors("ping"):
            await self._client.ping()

    async def warm(self) -> None:
        """Open `WARM_CONNECTIONS` pooled connections (concurrent PINGs each take one) and load
        the scripts, so the first storm after a start connects nobody on its path."""
        scripts = (
            self._acquire,
            self._renew,
            self._release,
            self._tokens,
            self._sessions,
            self._consume_use,
            self._counters,
        )
        with _store_errors("warm-up"):
            if isinstance(self._client, RedisCluster):
                await self._client.initialize()
                pings = [
                    self._client.ping(target_nodes=RedisCluster.PRIMARIES)
                    for _ in range(WARM_CONNECTIONS)
                ]
            else:
                pings = [self._client.ping() for _ in range(WARM_CONNECTIONS)]
            await asyncio.gather(*pings)
            for script in scripts:
                await self._client.script_load(script.script)

    async def aclose(self) -> None:
        with _store_errors("close"):
            await self._connection.aclose()

    async def _token_window(
        self, project: str, tokens: int, limits: QuotaLimits, session_id: str | None = None
    ) -> TokenWindow:
        keys = self._project_keys(project, "tokens")
        args: list[str | int] = [tokens, limits.tokens_per_minute, WINDOW_SECONDS]
        if session_id is not None:
            keys += self._project_keys(
                project, "spend", "spend_log", "spend_index", "shed", "leases"
            )
            args += [session_id, limits.shed_grace_percent]
        with _store_errors("charge" if tokens else "window"):
            used, ms_until_free, shed = await self._call(self._tokens, keys, args)
        seconds_until_free = None if int(ms_until_free) < 0 else int(ms_until_free) / 1000
        return TokenWindow(
            int(used), limits.tokens_per_minute, seconds_until_free, shed=bool(int(shed))
        )

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        if self._coalescer is None:
            return await script(keys=keys, args=args)
        return await self._coalescer.call(script, keys, args)

    async def _pipelined(self, script: AsyncScript, calls: list[ScriptCall]) -> list[Any]:
        """Run `script` once per call: in one round trip on a single Redis; on a Cluster, where
        redis-py refuses scripts in pipelines, as concurrent calls."""
        if isinstance(self._client, RedisCluster):
            return await asyncio.gather(*(script(keys=keys, args=args) for keys, args in calls))
        if not calls:
            return []
        try:
            return await self._evalsha_pipelined(script.sha, calls)
        except NoScriptError:
            # Redis restarted and forgot the script: what register_script does for one call.
            script.sha = await self._client.script_load(script.script)
            return await self._evalsha_pipelined(script.sha, calls)

    async def _evalsha_pipelined(self, sha: str, calls: list[ScriptCall]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(sha, len(keys), *keys, *args)
            return await pipe.execute()

    def _project_keys(self, project: str, *kinds: KeyKind) -> list[str]:
        return [quota_key(self._prefix, project, kind) for kind in kinds]

    def _lease_keys(self, lease: Lease, *kinds: KeyKind) -> list[str]:
        """The project's keys of `kinds`, then the user's leases if the session has a user."""
        keys = self._project_keys(lease.project, *kinds)
        if lease.user is not None:
            keys.append(user_key(self._prefix, lease.project, lease.user))
        return keys


def _command_timeout(client: Redis) -> float:
    """The client's command timeout (a redis:// URL may set it): a coalesced call waits no
    longer than that for its pipeline to be sent."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return float(timeout) if timeout else COMMAND_TIMEOUT_SECONDS


def _full_cap(answer: object) -> Literal["project", "user"]:
    """renew.lua's word for the cap that left a lost lease out (bytes or str, per decoding)."""
    word = answer.decode() if isinstance(answer, bytes) else str(answer)
    return "user" if word == "user" else "project"


def _details(lease: Lease) -> str:
    """What a lease stores besides its id (`user` is read by `sessions`, and by the per-user
    check while leases of an older relay version are live: see lua/common.lua)."""
    return json.dumps(
        {"user": lease.user, "started_at": lease.started_at},
        ensure_ascii=False,  # the user id then reaches Lua byte for byte, as in ARGV
        separators=(",", ":"),
    )


def _lapse(ms_until_lapse: int) -> float | None:
    """acquire.lua's ms until the first provisional lease lapses, in seconds (None: none)."""
    return None if ms_until_lapse < 0 else ms_until_lapse / 1000


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
