"""`live-relay doctor` against the wss:// emulator: all steps pass (the real command, in its own
process), and each broken setup gives its own FAIL line with a fix and a non-zero exit (the same
`diagnose` run in this process, which spares an interpreter start per case)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.doctor import diagnose
from app.emulator import Emulator, EmulatorConfig
from tests.production.launch import PROJECT, vertex_launch
from tests.support.net import free_port
from tests.support.tcp_proxy import ConnectProxy
from tests.support.tls import TLSFiles, make_tls_files
from tests.support.token_server import TokenServer, token_server, write_service_account

STEPS = ("settings", "credentials", "access token", "project", "TLS + WebSocket handshake")
# The current generation (the transcription model needs a TEXT setup), and an older model.
MODELS = ("gemini-live-2.5-flash", "gemini-3.8-live", "gemini-3.5-transcribe-live")


async def doctor(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run `live-relay doctor` without blocking the emulator in this event loop."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "doctor",
        env=full_env | env,
        cwd=cwd,  # no stray .env file
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode().splitlines()


async def diagnose_here(
    env: dict[str, str], cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[str]]:
    """`diagnose` in this process, with exactly `env`'s RELAY_* settings and Google variables."""
    for name in os.environ:
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)  # no stray .env file
    out = io.StringIO()
    code = await diagnose(out)
    return code, out.getvalue().splitlines()


def lines_of(output: list[str], status: str) -> list[str]:
    return [line for line in output if line.startswith(status)]


def base_env(
    tokens: TokenServer, emulator: Emulator, tls: TLSFiles, tmp_path: Path
) -> dict[str, str]:
    env = vertex_launch("service_account", tokens, emulator, tls, tmp_path).env
    return env | {"RELAY_ALLOWED_MODELS": ",".join(MODELS)}


async def test_doctor_passes_every_step_against_a_working_endpoint(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    with token_server() as tokens:
        config = EmulatorConfig(require_token=tokens.valid, known_projects=(PROJECT,))
        async with Emulator(config, ssl_context=tls_files.server_context()) as emulator:
            code, output = await doctor(base_env(tokens, emulator, tls_files, tmp_path), tmp_path)
    assert code == 0, "\n".join(output)
    passed = [line.split(":")[0].removeprefix("ok").strip() for line in lines_of(output, "ok")]
    assert passed == [*STEPS, *(f"model {model}" for model in MODELS)]
    assert lines_of(output, "FAIL") == []
    assert any("service account relay@test-project" in line for line in output)
    assert any("TLS verified" in line for line in output)


# broken setup -> (settings changed, the step that fails, words its line must hold)
BROKEN: dict[str, tuple[dict[str, str | None], str, str]] = {
    "no credentials": ({"RELAY_VERTEX_CREDENTIALS_FILE": None}, "credentials", "gcloud auth"),
    "wrong project": (
        {"RELAY_VERTEX_PROJECT": "someone-elses-project"},
        f"model {MODELS[0]}",
        "someone-elses-project",
    ),
    "model the project cannot use": (
        {"RELAY_ALLOWED_MODELS": f"{MODELS[0]},gemini-9-ultra-live"},
        "model gemini-9-ultra-live",
        "RELAY_ALLOWED_MODELS",
    ),
    "unreachable host": (
        {"RELAY_VERTEX_BASE_URL": "closed port"},
        "TLS + WebSocket handshake",
        "connection refused",
    ),
    "untrusted certificate": (
        {"RELAY_VERTEX_CA_FILE": "another CA"},
        "TLS + WebSocket handshake",
        "RELAY_VERTEX_CA_FILE",
    ),
    "egress proxy refusing": (
        {"HTTPS_PROXY": "a refusing proxy"},
        "TLS + WebSocket handshake",
        "check HTTPS_PROXY",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_doctor_names_what_is_broken_and_exits_non_zero(
    case: str, tls_files: TLSFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes, failing_step, words = BROKEN[case]
    proxy = ConnectProxy(refuse_with=403)  # started for the case that names it
    try:
        with token_server() as tokens:
            config = EmulatorConfig(require_token=tokens.valid, known_projects=(PROJECT,))
            async with Emulator(config, ssl_context=tls_files.server_context()) as emulator:
                env = base_env(tokens, emulator, tls_files, tmp_path)
                for name, value in changes.items():
                    if value is None:
                        del env[name]
                    elif value == "closed port":
                        env[name] = f"wss://127.0.0.1:{free_port()}"
                    elif value == "another CA":
                        env[name] = str(make_tls_files(tmp_path).ca_file)
                    elif value == "a refusing proxy":
                        await proxy.start()
                        env[name] = proxy.url
                    else:
                        env[name] = value
                code, output = await diagnose_here(env, tmp_path, monkeypatch)
    finally:
        await proxy.stop()
    assert code != 0
    [failure] = [line for line in lines_of(output, "FAIL") if failing_step in line]
    assert words in failure
    assert "-- fix: " in failure
    steps_before = STEPS[: STEPS.index(failing_step)] if failing_step in STEPS else STEPS
    assert len(lines_of(output, "ok")) >= len(steps_before)


async def test_a_token_endpoint_that_does_not_resolve_is_said_to_be_dns_not_bad_credentials(
    tls_files: TLSFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unresolvable = "https://oauth2.invalid/token"  # .invalid never resolves (RFC 6761)
    with token_server() as tokens:
        async with Emulator(EmulatorConfig(), ssl_context=tls_files.server_context()) as emulator:
            env = base_env(tokens, emulator, tls_files, tmp_path)
            credentials = write_service_account(tmp_path / "sa.json", unresolvable)
            env["RELAY_VERTEX_CREDENTIALS_FILE"] = str(credentials)
            code, output = await diagnose_here(env, tmp_path, monkeypatch)
    assert code != 0
    [failure] = lines_of(output, "FAIL")
    assert failure.startswith(
        f"FAIL  access token: could not reach the token endpoint {unresolvable}"
    )
    assert "revoked" not in failure
    assert "DNS" in failure.split("-- fix: ")[1]
    # The detail is whole, down to the resolver's own words at its very end.
    detail = failure.split(" -- fix: ")[0]
    assert "oauth2.invalid" in detail.split("(", 1)[1]
    assert detail.endswith(")")
    assert len(detail) > 200  # what the old cut to 200 characters would have hidden


async def test_doctor_can_be_tried_against_the_emulator(tmp_path: Path) -> None:
    env = {"RELAY_UPSTREAM": "emulator", "RELAY_ALLOWED_MODELS": ",".join(MODELS)}
    code, output = await doctor(env, tmp_path)
    assert code == 0, "\n".join(output)
    assert lines_of(output, "FAIL") == []
    [settings] = [line for line in output if line.startswith("ok    settings")]
    assert "emulator" in settings
    assert "no Google credentials needed" in settings
    passed = [line.split(":")[0].removeprefix("ok").strip() for line in lines_of(output, "ok")]
    assert passed == ["settings", "TLS + WebSocket handshake", *(f"model {m}" for m in MODELS)]


def test_doctor_help_says_it_can_be_tried_against_the_emulator() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "RELAY_UPSTREAM=emulator live-relay doctor" in " ".join(result.stdout.split())
