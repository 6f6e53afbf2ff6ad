"""What the benchmark ran on: figures mean little without the machine and the versions."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

LIBRARIES = ("fastapi", "starlette", "uvicorn", "websockets", "uvloop", "httptools", "redis")


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    kernel: str
    python: str
    libraries: dict[str, str]
    redis_server: str
    nginx: str | None
    load_average: tuple[float, float, float]

    def describe(self) -> list[str]:
        libraries = ", ".join(f"{name} {version}" for name, version in self.libraries.items())
        one, five, fifteen = self.load_average
        return [
            f"- Machine: {self.cores} cores ({self.cpu_model}), Linux {self.kernel}",
            f"- Python {self.python}; {libraries}",
            f"- redis-server {self.redis_server}; nginx {self.nginx or 'not installed'}",
            f"- Load average when the run started: {one:.2f} {five:.2f} {fifteen:.2f}",
        ]


def describe_machine() -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        kernel=platform.release(),
        python=platform.python_version(),
        libraries={name: _version(name) for name in LIBRARIES},
        redis_server=_command_version(["redis-server", "--version"], r"v=(\S+)") or "missing",
        nginx=_command_version(["nginx", "-v"], r"nginx/(\S+)"),
        load_average=os.getloadavg(),
    )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "missing"


def _command_version(command: list[str], pattern: str) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    match = re.search(pattern, result.stdout + result.stderr)
    return match.group(1) if match else "unknown"
