"""`docker compose up`, carried out without a container engine, inside a private network
namespace: run by tests/ops/test_compose_stack.py as

    unshare --net --mount python -m tests.ops.compose_stack IMAGE_ROOT WORKDIR [PROMETHEUS]

Inside, loopback is brought up and /etc/hosts (bind-mounted over, in this mount namespace only)
resolves every compose service name to 127.0.0.1, so `ws://emulator:9000` and `relay:8080`
mean what they mean on compose's network, on the ports the file gives. Each service runs as a
local process: its command as the image (tests/ops/local_image.py) or the host's redis-server
and Prometheus would run it, with its compose environment on top of the image's. Services
start in depends_on order once their healthchecks pass. Then a client does what the docs
promise: a text turn with the compose file's key through the relay and the emulator, with the
quota lease visible in Redis while it runs; the image's HEALTHCHECK is run; and Prometheus
scrapes with docker/prometheus.yml. What was observed is printed as one JSON object; the test
judges it. Nothing here reaches beyond this namespace's loopback.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import redis
from websockets.asyncio.client import connect

from tests.ops.deployment_files import ROOT, load_yaml
from tests.ops.local_image import LocalImage

COMPOSE = ROOT / "docker-compose.yml"
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
START_TIMEOUT_SECONDS = 60.0


def bring_loopback_up() -> None:
    """`ip link set lo up` without iproute2: a new network namespace starts with lo down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def resolve_services_to_loopback(names: list[str], workdir: Path) -> None:
    hosts = workdir / "hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(names) + "\n::1 localhost\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)


def die_with_the_driver() -> None:
    """In a service's process before exec: SIGKILL when the driver dies, however it dies, so no
    service outlives a run that timed out (unshare ends only the driver itself)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def healthcheck_argv(test: list[str]) -> list[str]:
    """A compose healthcheck `test` as a command line (CMD runs as is, CMD-SHELL under sh)."""
    kind, *rest = test
    return rest if kind == "CMD" else ["/bin/sh", "-c", rest[0]]


class Stack:
    def __init__(self, image: LocalImage, workdir: Path, prometheus: str | None) -> None:
        self.image = image
        self.workdir = workdir
        self.prometheus = prometheus
        self.compose: dict[str, Any] = load_yaml(COMPOSE)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def service_env(self, name: str) -> dict[str, str]:
        service = self.compose["services"][name]
        base = {"PATH": os.environ["PATH"], "HOME": str(self.workdir)}
        if "build" in service:  # built from our Dockerfile: the image's ENV first
            base |= self.image.env
        if name == "postgres":  # its healthcheck's client asks the server on TCP, not a socket
            base["PGHOST"] = "127.0.0.1"
        return base | {k: str(v) for k, v in service.get("environment", {}).items()}

    def service_argv(self, name: str) -> list[str]:
        service = self.compose["services"][name]
        command = [str(arg) for arg in service["command"]] if "command" in service else None
        if "build" in service:
            return self.image.command(command)
        if name == "postgres":  # the postgres image's entrypoint, on the host's PostgreSQL
            return [sys.executable, "-m", "tests.ops.postgres_service"]
        if name == "prometheus":  # the prom/prometheus image's own arguments, host paths
            assert self.prometheus is not None
            [mount] = [v for v in service["volumes"] if v.endswith("prometheus.yml:ro")]
            config = ROOT / mount.split(":")[0]
            return [
                self.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                "--web.listen-address=0.0.0.0:9090",
            ]
        assert command is not None, f"{name}: no command to run without its image"
        return command

    def start(self, name: str) -> None:
        service = self.compose["services"][name]
        for dependency, rule in service.get("depends_on", {}).items():
            if dependency not in self.processes:
                self.start(dependency)
            if rule["condition"] == "service_healthy":
                self.wait_healthy(dependency)
        log = (self.workdir / f"{name}.log").open("wb")
        cwd = self.image.workdir if "build" in service else self.workdir
        if name == "postgres":
            cwd = ROOT  # where `python -m tests.ops.postgres_service` finds the module
        self.processes[name] = subprocess.Popen(
            self.service_argv(name),
            cwd=cwd,
            env=self.service_env(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_the_driver,  # safe: the driver starts no threads
        )

    def healthcheck(self, name: str) -> list[str]:
        service = self.compose["services"][name]
        if "healthcheck" in service:
            return [
                self.image.host_path(a) for a in healthcheck_argv(service["healthcheck"]["test"])
            ]
        assert "build" in service, f"{name} has no healthcheck"
        return self.image.healthcheck

    def health(self, name: str) -> int:
        cwd = self.image.workdir if "build" in self.compose["services"][name] else self.workdir
        result = subprocess.run(
            self.healthcheck(name),
            cwd=cwd,
            env=self.service_env(name),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode

    def wait_healthy(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while self.health(name) != 0:
            process = self.processes[name]
            if process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{name} never became healthy:\n{log}")
            time.sleep(0.5)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def running(stack: Stack, names: list[str]) -> Iterator[Stack]:
    try:
        for name in names:
            if name not in stack.processes:
                stack.start(name)
        yield stack
    finally:
        stack.stop()


async def text_turn(url: str, api_key: str, store: redis.Redis) -> dict[str, Any]:
    """One text turn as a client of the published relay port; the project's lease in Redis is
    read while the session is open."""
    reply = ""
    async with connect(url, additional_headers={"Authorization": f"Bearer {api_key}"}) as ws:
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": "gemini-live-2.5-flash",
                        "generationConfig": {"responseModalities": ["TEXT"]},
                    }
                }
            )
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        leases_during = store.zcard("relay:{default}:leases")
        await ws.send(
            json.dumps(
                {
                    "clientContent": {
                        "turns": [{"role": "user", "parts": [{"text": "Hello from compose"}]}],
                        "turnComplete": True,
                    }
                }
            )
        )
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
                reply += part.get("text", "")
            if message.get("serverContent", {}).get("turnComplete"):
                break
    return {
        "setup_complete": "setupComplete" in first,
        "reply": reply,
        "leases_during_session": leases_during,
    }


def leases_once_released(store: redis.Redis) -> int:
    """The project's leases once the relay had time to release (a moment after the close)."""
    deadline = time.monotonic() + 10
    while (held := int(store.zcard("relay:{default}:leases"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    return held


def scrape_config_target() -> dict[str, Any]:
    """GET the target docker/prometheus.yml names, as Prometheus would, by its service name."""
    [job] = load_yaml(ROOT / "docker" / "prometheus.yml")["scrape_configs"]
    [target] = [t for group in job["static_configs"] for t in group["targets"]]
    url = f"http://{target}{job.get('metrics_path', '/metrics')}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = answer.read().decode()
    return {"url": url, "status": answer.status, "has_relay_build_info": "relay_build_info" in body}


def prometheus_view() -> dict[str, Any]:
    """Prometheus's own view of its scrape target once it has scraped (up to 60 s: the file
    scrapes every 15 s), and a series it stored from the relay."""
    deadline = time.monotonic() + 60
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen("http://localhost:9090/api/v1/targets", timeout=5) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(1)
    query = "http://localhost:9090/api/v1/query?query=relay_build_info"
    with urllib.request.urlopen(query, timeout=5) as answer:
        series = json.load(answer)["data"]["result"]
    return {
        "targets": [
            {"url": t["scrapeUrl"], "health": t["health"], "job": t["labels"]["job"]}
            for t in targets
        ],
        "relay_build_info_series": len(series),
    }


async def ledger_records(url: str) -> list[dict[str, Any]]:
    """The usage records in the compose stack's PostgreSQL, once the session's is final."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            connection = await asyncpg.connect(url, timeout=5)
            try:
                rows = await connection.fetch(
                    "SELECT final, project, usage_reports, total_tokens FROM ledger_sessions"
                )
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError):
            rows = []  # the relay has not created its table yet
        if any(row["final"] for row in rows) or time.monotonic() > deadline:
            return [dict(row) for row in rows]
        await asyncio.sleep(0.2)


def main(image_file: str, workdir_name: str, prometheus: str = "") -> int:
    workdir = Path(workdir_name)
    image = LocalImage.from_json(Path(image_file).read_text())
    stack = Stack(image, workdir, prometheus or None)
    bring_loopback_up()
    resolve_services_to_loopback(list(stack.compose["services"]), workdir)
    relay_env = stack.service_env("relay")
    [published] = stack.compose["services"]["relay"]["ports"]
    host_port = str(published).split(":")[0]
    default = [n for n, s in stack.compose["services"].items() if "profiles" not in s]
    monitoring = ["prometheus"] if prometheus else []
    report: dict[str, Any] = {}
    with running(stack, default + monitoring):
        stack.wait_healthy("relay")
        report["relay_healthcheck"] = stack.health("relay")
        report["healthcheck_argv"] = stack.healthcheck("relay")
        report["turn"] = asyncio.run(
            text_turn(
                f"ws://localhost:{host_port}/v1/live",
                relay_env["RELAY_API_KEYS"].split(",")[0],
                redis.Redis.from_url(relay_env["RELAY_REDIS_URL"], decode_responses=True),
            )
        )
        store = redis.Redis.from_url(relay_env["RELAY_REDIS_URL"], decode_responses=True)
        report["turn"]["leases_after_session"] = leases_once_released(store)
        # What the session left in Redis: its token charge, in the project's window.
        report["turn"]["keys_after_session"] = sorted(store.scan_iter("relay:*"))
        report["turn"]["ledger"] = asyncio.run(ledger_records(relay_env["RELAY_LEDGER_URL"]))
        report["config_target_scrape"] = scrape_config_target()
        if prometheus:
            report["prometheus"] = prometheus_view()
        report["running"] = {name: p.poll() is None for name, p in stack.processes.items()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
