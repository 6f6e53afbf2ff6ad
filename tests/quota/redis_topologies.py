"""Redis as production may run it, started for one test: behind Sentinel, or as a Cluster."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.net import free_port, wait_for_port


@contextmanager
def redis_process(directory: Path, *arguments: str) -> Iterator[int]:
    """A redis-server (or sentinel) with `arguments`, on a free port; yields the port."""
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
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


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
