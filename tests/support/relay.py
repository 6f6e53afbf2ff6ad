"""Run the relay for a test: in-process uvicorn on a free port, or a real `live-relay serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from app.factory import create_app
from app.relay.runtime import Relay
from app.serve import uvicorn_config
from app.settings import Settings
from tests.support.asgi import serving
from tests.support.net import wait_for_port


@dataclass(frozen=True)
class RunningRelay:
    app: FastAPI
    url: str  # ws(s)://host:port/v1/live
    http_url: str  # http(s)://host:port

    @property
    def state(self) -> Relay:
        relay: Relay = self.app.state.relay
        return relay


@asynccontextmanager
async def running_relay(settings: Settings) -> AsyncIterator[RunningRelay]:
    """The relay app under a real uvicorn server in this event loop, on a free port.

    Unless the test chose where metrics go, they are on the relay's own port (as under
    `live-relay dev`), so tests read them at `http_url + "/metrics"` and bind no other port."""
    if not {"metrics_port", "metrics_on_client_port"} & settings.model_fields_set:
        settings = settings.model_copy(update={"metrics_on_client_port": True})
    app = create_app(settings)
    tls = settings.tls_enabled
    host = "localhost" if tls else "127.0.0.1"
    async with serving(uvicorn_config(settings, app, configure_logs=False)) as port:
        yield RunningRelay(
            app=app,
            url=f"{'wss' if tls else 'ws'}://{host}:{port}/v1/live",
            http_url=f"{'https' if tls else 'http'}://{host}:{port}",
        )


# What `serve` prints once its port is bound (app.serve.announce_url).
ANNOUNCED_PORT = re.compile(r"^live-relay listening on wss?://[^/\s]+:(\d+)/", re.MULTILINE)


class RelayProcess:
    """`live-relay serve` in a subprocess, output captured to a file for later reading.

    Without `port`, the relay binds any free port itself (RELAY_PORT=0) and the port is read
    from the line it prints: no window in which another process could take a port picked for it.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_file: Path,
        port: int | None = None,
        module: str = "app",  # `python -m MODULE serve`: a test launcher may wrap the CLI
    ) -> None:
        self.port = port or 0
        self.log_file = log_file
        full_env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
        # Metrics on a free port of their own, as `serve` does by default on a fixed one.
        full_env |= {
            "RELAY_PORT": str(self.port),
            "RELAY_LOG_FORMAT": "json",
            "RELAY_METRICS_PORT": "0",
            **env,
        }
        self._log = log_file.open("ab")
        self.process = self._start(module, full_env)
        try:
            if not self.port:
                self.port = self._announced_port(timeout=30)
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"relay did not start:\n{self.output()}") from None

    def _start(self, module: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                [sys.executable, "-m", module, "serve"],
                env=env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # A group of its own: `kill` ends the workers of `--workers N` with their
                # supervisor (a SIGKILLed supervisor leaves its workers running otherwise).
                start_new_session=True,
            )
        except BaseException:  # not started (make test-fast skips here): nothing to kill
            self._log.close()
            raise

    def _announced_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not (announced := ANNOUNCED_PORT.search(self.output())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError("no port announced")
            time.sleep(0.02)
        return int(announced[1])

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1/live"

    def output(self) -> str:
        """Everything the process printed so far (the file stays readable after `kill`)."""
        return self.log_file.read_text(errors="replace")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the relay's log:\n{self.output()}")
            time.sleep(0.05)

    def session_ended(self) -> dict[str, object]:
        """The one session's "session ended" line, as JSON, once it is logged."""
        self.wait_for_log('"session ended"')
        lines = [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]
        (ended,) = [line for line in lines if line.get("msg") == "session ended"]
        assert isinstance(ended, dict)
        return ended

    async def until_workers_ready(self, workers: int) -> None:
        """Wait (up to 30 s) until every worker logged "relay ready": before that the kernel hands
        every connection to the workers already listening, so a test of several would see one."""
        for _ in range(600):  # polls the log file: there is nothing to await
            if self.output().count('"relay ready') >= workers:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{workers} workers not ready:\n{self.output()}")
