"""The Dockerfile's image laid out in a local directory, without a container engine.

Each instruction of the Dockerfile is carried out on the host: the build stage's RUN commands
run under /bin/sh, COPY copies from the build context, ENV and WORKDIR are followed, and the
image's absolute paths (/opt/..., /src) live under a root directory of the test's. What the
image then runs (ENTRYPOINT, CMD, HEALTHCHECK) comes back as commands for the host, with the
image's environment. Differences from a real build, on purpose: the host's Python rather than
the base image's (the lock covers both), pip's cache is allowed (the files are the same: the
lock pins them by hash), and the runtime stage's RUN (useradd) is not run, so processes run as
the test's user.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.ops.deployment_files import DOCKERFILE, ROOT, Instruction, dockerfile_stages

# Absolute paths the image writes to; on the host they live under the image root.
IMAGE_PATH = re.compile(r"(?<![\w./])(/opt(?:/[\w.-]+)*|/src(?:/[\w.-]+)*)")


@dataclass
class LocalImage:
    root: Path
    env: dict[str, str] = field(default_factory=dict)  # the final stage's ENV, host paths
    workdir: Path | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)

    def host_path(self, text: str) -> str:
        return IMAGE_PATH.sub(lambda m: str(self.root) + m[1], text)

    def to_json(self) -> str:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, default=str)

    @classmethod
    def from_json(cls, text: str) -> LocalImage:
        fields = json.loads(text)
        workdir = Path(fields.pop("workdir")) if fields["workdir"] else None
        return cls(root=Path(fields.pop("root")), workdir=workdir, **fields)

    def command(self, service_command: list[str] | None = None) -> list[str]:
        """What a container of the image runs: ENTRYPOINT + (the service's command or CMD)."""
        argv = self.entrypoint + (service_command if service_command is not None else self.cmd)
        return [self.host_path(arg) for arg in argv]


def _exec_form(arguments: str) -> list[str]:
    arguments = re.sub(r"^(--\S+\s+)*", "", arguments).removeprefix("CMD ").strip()
    parsed: list[str] = json.loads(arguments)
    return parsed


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)


def build(root: Path, dockerfile: Path = DOCKERFILE, context: Path = ROOT) -> LocalImage:
    """Carry out the Dockerfile into `root`; returns what the final stage runs."""
    image = LocalImage(root=root)
    python_dir = root / "base-image-bin"  # the base image's `python` on PATH
    python_dir.mkdir(parents=True)
    (python_dir / "python").symlink_to(sys.executable)
    stages = dockerfile_stages(dockerfile)
    for number, stage in enumerate(stages):
        final = number == len(stages) - 1
        env = {"PATH": f"{python_dir}:{os.environ['PATH']}"}
        workdir = root
        for instruction in stage[1:]:
            workdir = _apply(image, instruction, env, workdir, context, run=not final)
        if final:
            image.env = {k: v for k, v in env.items()}
            image.workdir = workdir
    return image


def _apply(
    image: LocalImage,
    instruction: Instruction,
    env: dict[str, str],
    workdir: Path,
    context: Path,
    *,
    run: bool,
) -> Path:
    keyword, arguments = instruction.keyword, instruction.arguments
    if keyword == "ENV":
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            env[name] = image.host_path(_expand(value, env))
    elif keyword == "WORKDIR":
        workdir = Path(image.host_path(arguments))
        workdir.mkdir(parents=True, exist_ok=True)
    elif keyword == "COPY":
        *sources, destination = shlex.split(arguments)
        if sources[0].startswith("--from="):
            # The build stage's files are already in the one image root.
            return workdir
        target = Path(image.host_path(destination))
        target = target if target.is_absolute() else workdir / target
        for source in sources:
            _copy(context / source.rstrip("/"), target, destination.endswith("/"))
    elif keyword == "RUN" and run:
        build_env = os.environ | env
        build_env.pop("PIP_NO_CACHE_DIR", None)
        subprocess.run(
            ["/bin/sh", "-c", image.host_path(arguments)],
            cwd=workdir,
            env=build_env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    elif keyword == "ENTRYPOINT":
        image.entrypoint = _exec_form(arguments)
    elif keyword == "CMD":
        image.cmd = _exec_form(arguments)
    elif keyword == "HEALTHCHECK":
        image.healthcheck = [image.host_path(arg) for arg in _exec_form(arguments)]
    return workdir


def _copy(source: Path, target: Path, into_directory: bool) -> None:
    if source.is_dir():
        shutil.copytree(
            source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        return
    if into_directory or target.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
