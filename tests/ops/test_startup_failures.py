"""What a user sees when `live-relay serve` (or `dev`, or `make run`) cannot start: one line per
problem on stderr, naming the setting or file and the fix, no traceback, nothing printed as if
it were listening, and an exit status of each kind's own (app/exit_status.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.exit_status import ExitStatus
from tests.ops.deployment_files import ROOT

VENV = Path(sys.prefix)
KEY = "lr_startup_test_" + "k" * 24
NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): no machine has it


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user with no RELAY_* settings and no Google credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "GOOGLE_"))}
    return env | {
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "True",  # no metadata server probe: this is no Google machine
    }


def live_relay(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=tmp_path,  # no stray .env file
        env=clean_env(tmp_path) | settings,
        capture_output=True,
        text=True,
        timeout=60,
    )


def projects_file(tmp_path: Path) -> str:
    path = tmp_path / "projects.toml"
    path.write_text(
        "[projects.acme]\n"
        'api_keys = ["sha256:' + "0" * 64 + '"]\n'
        "max_sessions = 3\n"  # no such field
    )
    return str(path)


CASES = {
    # case: (arguments, settings, exit status, words the one line must hold)
    "no Google credentials": (
        ("serve", "--port", "0"),
        {"RELAY_API_KEYS": KEY},
        ExitStatus.GOOGLE_CREDENTIALS,
        ("no Google credentials", "gcloud auth application-default login", "live-relay dev"),
    ),
    "no client credentials": (
        ("serve", "--port", "0"),
        {"RELAY_UPSTREAM": "emulator"},
        ExitStatus.NO_CLIENT_CREDENTIALS,
        ("RELAY_API_KEYS", "RELAY_PROJECTS_FILE", "live-relay keys create"),
    ),
    "an unknown field in the projects file": (
        ("serve", "--port", "0"),
        {"RELAY_UPSTREAM": "emulator", "RELAY_PROJECTS_FILE": "<projects file>"},
        ExitStatus.FILE,
        ("RELAY_PROJECTS_FILE", "projects.acme.max_sessions", "no such field", "fix:"),
    ),
    "a missing TLS certificate": (
        ("serve", "--port", "0", "--tls-cert", "missing/cert.pem", "--tls-key", "key.pem"),
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": KEY},
        ExitStatus.FILE,
        ("--tls-cert", "missing/cert.pem", "No such file", "fix:"),
    ),
    "a setting that is no number": (
        ("serve",),
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": KEY, "RELAY_PORT": "eighty"},
        ExitStatus.SETTINGS,
        ("RELAY_PORT",),
    ),
    "an address of another machine": (
        ("dev", "--plain", "--host", NOT_HERE, "--port", "0"),
        {},
        ExitStatus.CANNOT_LISTEN,
        (NOT_HERE, "--host 127.0.0.1", "fix:"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_start_up_failure_is_one_line_with_the_fix_and_its_own_status(
    case: str, tmp_path: Path
) -> None:
    args, settings, status, words = CASES[case]
    (tmp_path / "key.pem").write_text("not used: the certificate is missing\n")
    settings = {
        name: projects_file(tmp_path) if value == "<projects file>" else value
        for name, value in settings.items()
    }
    result = live_relay(tmp_path, *args, **settings)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""  # never "listening"
    [line] = result.stderr.splitlines()
    assert line.startswith("live-relay: ")
    for word in words:
        assert word in line, line


def test_each_kind_of_failure_has_a_status_of_its_own() -> None:
    # Two cases above are of one kind (a file); the others, and a taken port, each of their own.
    statuses = {status for _, _, status, _ in CASES.values()} | {ExitStatus.PORT_TAKEN}
    assert len(statuses) == len(CASES)
    assert not statuses & {0, 1, 3}  # success, a Python traceback, uvicorn's any-failure


def test_serve_with_no_settings_says_every_problem_at_once(tmp_path: Path) -> None:
    result = live_relay(tmp_path, "serve", "--port", "0")
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert "Traceback" not in result.stderr
    assert any("no Google credentials" in line for line in lines)
    assert any("no client could connect" in line for line in lines)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_fails_when_the_relay_cannot_start(tmp_path: Path) -> None:
    # -o: use this test's virtualenv as it is, never rebuild it from here.
    result = subprocess.run(
        [
            "make",
            "-C",
            str(ROOT),
            f"VENV={VENV}",
            "-o",
            f"{VENV}/.installed-stamp",
            "run",
            f"ARGS=--plain --host {NOT_HERE} --port 0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in clean_env(tmp_path).items() if not k.startswith("MAKE")},
    )
    assert result.returncode != 0
    assert f"cannot listen on {NOT_HERE}:0" in result.stderr
    assert f"Error {ExitStatus.CANNOT_LISTEN}" in result.stderr  # make names the status
