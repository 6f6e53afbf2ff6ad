"""What a newcomer meets on the first `make run`: readable log lines, a taken port said in one
line with the fix, and a Python without venv support answered with the package to install."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.ports import PORT_TAKEN_EXIT_STATUS, holder, is_taken
from tests.ops.deployment_files import ROOT

VENV = Path(sys.prefix)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def live_relay(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")} | settings
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_holder_of_a_port_is_named(taken_port: int) -> None:
    assert is_taken("127.0.0.1", taken_port)
    assert (
        holder(taken_port)
        == f"{Path(f'/proc/{os.getpid()}/comm').read_text().strip()} (pid {os.getpid()})"
    )


@pytest.mark.parametrize(
    ("command", "fix"),
    [("dev", 'make run ARGS="--port '), ("serve", "RELAY_PORT=")],
)
def test_a_taken_port_is_one_line_with_the_fix(
    taken_port: int, tmp_path: Path, command: str, fix: str
) -> None:
    # `serve` as set up to start (`dev` sets itself up): the port is all that stops it.
    settings = {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": "lr_first_run_" + "k" * 24}
    result = live_relay(command, "--port", str(taken_port), cwd=tmp_path, **settings)
    assert result.returncode == PORT_TAKEN_EXIT_STATUS
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"port {taken_port} on 127.0.0.1 is already in use by " in line
    assert f"(pid {os.getpid()})" in line
    suggested = int(re.search(r"--port (\d+)", line)[1])  # type: ignore[index]
    assert suggested != taken_port
    assert not is_taken("127.0.0.1", suggested)
    assert fix in line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_on_a_taken_port_prints_that_line_and_no_make_error(
    taken_port: int,
) -> None:
    # -o: use this test's virtualenv as it is, never rebuild it from here.
    args = f"ARGS=--port {taken_port}"
    result = subprocess.run(
        ["make", "-C", str(ROOT), f"VENV={VENV}", "-o", f"{VENV}/.installed-stamp", "run", args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "MAKE"))},
    )
    assert result.returncode == 0, result.stderr
    lines = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "Entering" not in line and "Leaving" not in line
    ]
    assert len(lines) == 1, lines
    assert "already in use" in lines[0]


def test_dev_writes_readable_lines_not_json(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "dev", "--port", "0", "--api-key", "lr_dev_log_test"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log_lines = []
    with process:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if " INFO " in line:
                log_lines.append(line)
            if "Application startup complete" in line or not line:
                break
        process.terminate()
        process.wait(timeout=30)
    assert any("Application startup complete" in line for line in log_lines), log_lines
    for line in log_lines:
        assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+\+00:00 INFO [\w.]+: ", line), line


def fake_debian_python(directory: Path) -> Path:
    """python3 as Debian ships it without python3.X-venv: venv is there, ensurepip is not."""
    shadow = directory / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text('raise ImportError("ensurepip is in python3-venv")\n')
    python = directory / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def commands(directory: Path, **scripts: str) -> Path:
    """A directory of stand-in commands to put first on PATH."""
    directory.mkdir()
    for name, body in scripts.items():
        (directory / name).write_text(f"#!/bin/sh\n{body}\n")
        (directory / name).chmod(0o755)
    return directory


MAKE = ["make", "-f", str(ROOT / "Makefile")]
PY_VERSION = "{}.{}".format(*sys.version_info[:2])


def make_venv(directory: Path, python: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """`make venv/bin/python` in `directory` with `python`, the stand-in commands first on PATH."""
    return subprocess.run(
        [*MAKE, "-C", str(directory), f"PYTHON={python}", "VENV=venv", "venv/bin/python"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_without_root_make_names_the_venv_package_to_install(tmp_path: Path) -> None:
    python = fake_debian_python(tmp_path)
    # Not root, as a developer usually is not: `id -u` answers 1000.
    bin_dir = commands(tmp_path / "bin", id="echo 1000")
    result = make_venv(tmp_path, python, bin_dir)
    assert result.returncode != 0
    expected = f"install python{PY_VERSION}-venv (sudo apt-get install python{PY_VERSION}-venv)"
    assert expected in result.stdout, result.stdout + result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_as_root_make_installs_the_venv_package_then_creates_the_venv(tmp_path: Path) -> None:
    python = fake_debian_python(tmp_path)
    log = tmp_path / "apt-get.log"
    # apt-get stands in for Debian's: it logs what it was asked and "installs" ensurepip.
    bin_dir = commands(
        tmp_path / "bin",
        id="echo 0",
        **{"apt-get": f'echo "$*" >> {log}; rm -f {tmp_path}/shadow/ensurepip.py'},
    )
    result = make_venv(tmp_path, python, bin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installing python{PY_VERSION}-venv with apt-get" in result.stdout
    assert log.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq python{PY_VERSION}-venv",
    ]
    assert (tmp_path / "venv" / "bin" / "python").exists()
