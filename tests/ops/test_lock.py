"""The lock files pin everything pyproject.toml asks for, for Python 3.11 and for the
Dockerfile's Python, with hashes; the image and the dev environment get the same versions.

A dependency added to pyproject.toml without `make lock` fails here (and `make` says so too,
through `pip check`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.ops.deployment_files import ROOT, dockerfile_stages

LOCK_RUNTIME = ROOT / "requirements" / "runtime.txt"
LOCK_DEV = ROOT / "requirements" / "dev.txt"
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\"
)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


Pin = tuple[str, Marker | None]  # version, and where it applies (a universal lock may fork)


def pins(lock: Path) -> dict[str, list[Pin]]:
    """name -> its (version, marker) pins; every pin must carry hashes."""
    found: dict[str, list[Pin]] = {}
    lines = lock.read_text().splitlines()
    for number, line in enumerate(lines):
        if match := PIN.match(line):
            assert lines[number + 1].strip().startswith("--hash=sha256:"), line
            marker = Marker(match["marker"]) if match["marker"] else None
            found.setdefault(normalized(match["name"]), []).append((match["version"], marker))
    return found


def dockerfile_python() -> str:
    image = dockerfile_stages()[-1][0].arguments.split()[0]  # python:3.12-slim
    version = re.fullmatch(r"python:(\d+\.\d+)[-\w]*", image)
    assert version, image
    return version[1]


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


def environment(python: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "os_name": "posix",
        "extra": "",
    }


def pinned_version(lock: Path, name: str, python: str) -> str | None:
    env = environment(python)
    applying = [
        v for v, marker in pins(lock).get(name, []) if marker is None or marker.evaluate(env)
    ]
    assert len(applying) <= 1, f"{name}: several pins apply on Python {python}"
    return applying[0] if applying else None


def unlocked(lock: Path, extras: tuple[str, ...], python: str) -> list[str]:
    problems = []
    for requirement in requirements(extras):
        if requirement.marker is not None and not requirement.marker.evaluate(environment(python)):
            continue
        version = pinned_version(lock, normalized(requirement.name), python)
        if version is None:
            problems.append(f"{requirement}: not in {lock.name} for Python {python}")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: {lock.name} pins {version}")
    return problems


@pytest.mark.parametrize("python", ["3.11", dockerfile_python()])
def test_the_runtime_lock_pins_every_dependency(python: str) -> None:
    assert unlocked(LOCK_RUNTIME, (), python) == []


@pytest.mark.parametrize("python", ["3.11", dockerfile_python()])
def test_the_dev_lock_pins_every_dependency_and_extra(python: str) -> None:
    assert unlocked(LOCK_DEV, ("dev", "docs"), python) == []


@pytest.mark.parametrize("python", ["3.11", dockerfile_python()])
def test_the_image_gets_the_versions_the_tests_ran_with(python: str) -> None:
    differing = {
        name: (runtime, dev)
        for name in pins(LOCK_RUNTIME)
        if (runtime := pinned_version(LOCK_RUNTIME, name, python))
        != (dev := pinned_version(LOCK_DEV, name, python))
    }
    assert differing == {}


def test_a_dependency_missing_from_the_lock_is_caught(tmp_path: Path) -> None:
    lock = tmp_path / "runtime.txt"
    text = LOCK_RUNTIME.read_text()
    lock.write_text(re.sub(r"(?m)^redis==.*\n(    .*\n)*", "", text))
    assert unlocked(lock, (), "3.11") == [
        next(
            f"{r}: not in runtime.txt for Python 3.11"
            for r in requirements(())
            if r.name == "redis"
        )
    ]
