"""Start the benchmark's processes pinned to a core with `taskset`, and stop them for sure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.net import wait_for_port

STOP_SECONDS = 15


def require_taskset() -> str:
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SystemExit("taskset is missing (util-linux): it pins processes to cores")
    return taskset


def pinned(core: int, command: list[str]) -> list[str]:
    return [require_taskset(), "-c", str(core), *command]


def pin_existing(core: int, pid: int) -> None:
    """Pin a process someone else started (all its threads)."""
    subprocess.run(
        [require_taskset(), "-a", "-p", "-c", str(core), str(pid)],
        check=True,
        capture_output=True,
        timeout=10,
    )


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    log: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    startup_seconds: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (output to `log`) until the block ends; it must listen on `port` within
    `startup_seconds`."""
    full_env = {
        key: value for key, value in os.environ.items() if not key.startswith("RELAY_")
    } | dict(env or {})
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=full_env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            try:
                wait_for_port(port, timeout=startup_seconds)
            except TimeoutError:
                raise RuntimeError(
                    f"{' '.join(command)} did not listen on {port}; its log:\n{log.read_text()}"
                ) from None
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a grace period; children die with their process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)
