"""Redis as production may run it, started for one test: behind Sentinel (one master alone, or
a master, a replica and three sentinels that fail it over), or as a Cluster (one node owning
every slot, or three masters made by `redis-cli --cluster create`)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from tests.support.net import free_port, wait_for_port


@contextmanager
def redis_process(directory: Path, *arguments: str) -> Iterator[int]:
    """A redis-server (or sentinel) with `arguments`, on a free port; yields the port."""
    with redis_process_handle(directory, *arguments) as (port, _):
        yield port


@contextmanager
def redis_process_handle(
    directory: Path, *arguments: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`redis_process`, also yielding the process, for tests that kill or freeze it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `make test` installs it")
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, *arguments, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port, process
    finally:
        process.kill()
        process.wait(timeout=10)


def wait_until(condition: Callable[[], bool], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within} s")
        time.sleep(0.05)


@contextmanager
def sentinel_setup(directory: Path, password: str) -> Iterator[int]:
    """A password-protected master watched by one sentinel (same password); yields the
    sentinel's port. The service is called `mymaster`."""
    with redis_process(
        directory / "master", "--save", "", "--appendonly", "no", "--requirepass", password
    ) as master_port:
        config = directory / "sentinel.conf"
        config.write_text(
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            f"sentinel auth-pass mymaster {password}\n"
            f"requirepass {password}\n"
        )
        with redis_process(directory / "sentinel", str(config), "--sentinel") as sentinel_port:
            yield sentinel_port


@contextmanager
def single_node_cluster(directory: Path) -> Iterator[int]:
    """A Redis Cluster of one node owning every slot: enough to run scripts the Cluster way
    (slot routing, MOVED-free pipelines, NOSCRIPT per node); yields its port."""
    with redis_process(
        directory,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        # The bus defaults to port + 10000, past 65535 for many free ports: choose it too.
        "--cluster-port",
        str(free_port()),
        "--save",
        "",
        "--appendonly",
        "no",
    ) as port:
        node = redis.Redis(port=port, decode_responses=True)
        try:
            node.cluster("ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + 10
            while node.cluster("INFO")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise TimeoutError("the one-node cluster never became ready")
                time.sleep(0.05)
        finally:
            node.close()
        yield port


NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
CLUSTER_NODE = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")


@contextmanager
def three_master_cluster(directory: Path) -> Iterator[list[int]]:
    """A Redis Cluster of three masters (no replicas), slots split by `redis-cli --cluster
    create`; yields the masters' ports."""
    with ExitStack() as stack:
        ports = [
            stack.enter_context(
                redis_process(
                    directory / f"node-{index}",
                    *CLUSTER_NODE,
                    # The bus defaults to port + 10000, past 65535 for many free ports.
                    "--cluster-port",
                    str(free_port()),
                    *NO_PERSISTENCE,
                )
            )
            for index in range(3)
        ]
        subprocess.run(
            [
                _redis_cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:
            wait_until(partial(_cluster_ok, port), f"cluster node {port} ready")
        yield ports


@dataclass
class SentinelGroup:
    """A master, its replica and three sentinels watching them as `mymaster`."""

    master_port: int
    master: subprocess.Popen[bytes]
    replica_port: int
    sentinel_ports: list[int]

    @property
    def url(self) -> str:
        return (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
            + ("/mymaster")
        )

    def master_address(self) -> tuple[str, int]:
        with redis.Redis(port=self.sentinel_ports[0], decode_responses=True) as sentinel:
            host, port = sentinel.sentinel_get_master_addr_by_name("mymaster")
        return host, int(port)


# Sentinels call the master down after 1 s of silence and give a failover 10 s: a test
# measures failover in seconds, not the minute of the defaults.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10_000


@contextmanager
def sentinel_group(directory: Path) -> Iterator[SentinelGroup]:
    """A master with one replica in sync, and three sentinels (quorum 2) that know each other."""
    with ExitStack() as stack:
        master_port, master = stack.enter_context(
            redis_process_handle(directory / "master", *NO_PERSISTENCE)
        )
        replica_port = stack.enter_context(
            redis_process(
                directory / "replica", *NO_PERSISTENCE, "--replicaof", "127.0.0.1", str(master_port)
            )
        )
        with redis.Redis(port=replica_port, decode_responses=True) as replica:
            wait_until(
                lambda: replica.info("replication")["master_link_status"] == "up",
                "replica in sync",
            )
        sentinel_ports = []
        for index in range(3):
            config = directory / f"sentinel-{index}" / "sentinel.conf"
            config.parent.mkdir(parents=True)
            config.write_text(
                f"sentinel monitor mymaster 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds mymaster {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout mymaster {FAILOVER_TIMEOUT_MS}\n"
            )
            sentinel_ports.append(
                stack.enter_context(redis_process(config.parent, str(config), "--sentinel"))
            )
        for port in sentinel_ports:
            wait_until(
                partial(_sentinel_ready, port), f"sentinel {port} knows the others and the replica"
            )
        yield SentinelGroup(master_port, master, replica_port, sentinel_ports)


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as node:
        return bool(node.cluster("INFO")["cluster_state"] == "ok")


def _sentinel_ready(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as sentinel:
        state = sentinel.sentinel_master("mymaster")
    assert isinstance(state, dict)
    return int(state["num-other-sentinels"]) == 2 and int(state["num-slaves"]) == 1


def _redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed: it comes with redis-server's package")
    return binary
