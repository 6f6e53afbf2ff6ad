"""Every way the upstream can fail to open: a precise close for the client, one counted cause,
one log line. And the settings the production path refuses before serving at all."""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app.emulator import Emulator, EmulatorConfig
from app.exit_status import ExitStatus
from app.metrics import RelayMetrics, metrics_registry
from app.relay.upstream.upstream import connect_failure
from app.settings import Settings
from tests.production.launch import API_KEY, PROJECT
from tests.relay.test_setup_and_closes import close_of
from tests.support.net import free_port
from tests.support.relay import RunningRelay, running_relay
from tests.support.scrape import scrape, value
from tests.support.tls import TLSFiles, make_tls_files
from tests.support.token_server import token_server, write_service_account

MODEL = "gemini-live-2.5-flash"


@asynccontextmanager
async def upstream(kind: str, tls_files: TLSFiles) -> AsyncIterator[str]:
    """The base URL of a wss:// upstream: `working`, `refusing` (HTTP 401 at the upgrade) or
    `absent` (nothing listens)."""
    if kind == "absent":
        yield f"wss://127.0.0.1:{free_port()}"
        return
    config = EmulatorConfig()
    if kind == "refusing":
        config = EmulatorConfig(require_token="not-the-relays-token", auth_failure="reject")
    async with Emulator(config, ssl_context=tls_files.server_context()) as emulator:
        yield emulator.base_url


# case: (upstream, CA the relay trusts, close reason starts with, cause label, status label)
CASES = {
    "another CA": (
        "working",
        "other",
        "upstream unavailable: certificate verify failed",
        "tls_certificate",
        "none",
    ),
    "system CAs": (
        "working",
        "system",
        "upstream unavailable: certificate verify failed",
        "tls_certificate",
        "none",
    ),
    "HTTP 401": (
        "refusing",
        "test",
        "upstream refused the connection: HTTP 401",
        "http_status",
        "401",
    ),
    "closed port": (
        "absent",
        "test",
        "upstream unavailable: connection refused",
        "refused",
        "none",
    ),
}


def vertex_settings(
    base_url: str, ca_file: Path | None, credentials: Path, **overrides: Any
) -> Settings:
    """A relay in front of a Vertex endpoint at `base_url`, trusting `ca_file`."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        upstream="vertex",
        vertex_base_url=base_url,
        vertex_ca_file=ca_file,
        vertex_credentials_file=credentials,
        api_keys=(API_KEY,),  # type: ignore[arg-type]
        port=0,
        **overrides,
    )


async def close_of_a_session(relay: RunningRelay) -> tuple[int, str]:
    """Start a session; the code and reason of the close the client gets."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with connect(relay.url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        return await close_of(ws)


@pytest.mark.parametrize("case", list(CASES))
async def test_an_upstream_that_cannot_be_opened_closes_1011_naming_the_cause(
    case: str, tls_files: TLSFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kind, trust, reason_start, cause, status = CASES[case]
    ca_file: Path | None = None  # "system": the system's CAs, which do not know the test CA
    if trust == "test":
        ca_file = tls_files.ca_file
    elif trust == "other":
        ca_file = make_tls_files(tmp_path).ca_file  # a CA that signed nothing here
    caplog.set_level(logging.INFO, logger="app.relay.endpoint")
    with token_server() as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url, PROJECT)
        async with (
            upstream(kind, tls_files) as url,
            running_relay(vertex_settings(url, ca_file, credentials)) as relay,
        ):
            code, reason = await close_of_a_session(relay)
            samples = await scrape(relay.http_url + "/metrics")
            async with httpx.AsyncClient() as http:
                ready = await http.get(relay.http_url + "/readyz")
    assert code == 1011
    assert reason.startswith(reason_start)
    assert value(samples, "relay_upstream_failures_total", cause=cause, status=status) == 1
    # /readyz is about this replica: an upstream outage must not empty every load balancer.
    assert ready.status_code == 200
    failures = [r for r in caplog.records if r.getMessage().startswith("upstream connect failed")]
    assert [getattr(r, "cause", None) for r in failures] == [cause]


async def test_a_hanging_token_endpoint_closes_1011_within_the_connect_deadline(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    with token_server(delay_seconds=2) as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url, PROJECT)
        async with Emulator(ssl_context=tls_files.server_context()) as emulator:
            settings = vertex_settings(
                emulator.base_url,
                tls_files.ca_file,
                credentials,
                upstream_connect_timeout_seconds=0.5,
            )
            async with running_relay(settings) as relay:
                code, reason = await close_of_a_session(relay)
                samples = await scrape(relay.http_url + "/metrics")
    assert (code, reason) == (1011, "upstream credentials unusable: no access token within 0.5s")
    assert value(samples, "relay_upstream_failures_total", cause="credentials", status="none") == 1
    assert emulator.stats.connections_accepted == 0


def test_other_tls_failures_have_their_own_cause() -> None:
    # A handshake alert (no shared protocol or cipher) cannot be provoked from the emulator
    # with Python's ssl module without a broken server; the classification is checked alone.
    failure = connect_failure(ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION]"))
    assert failure.cause == "tls"
    assert str(failure).startswith("upstream unavailable: TLS failed")


def serve_refusal(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env |= {"RELAY_UPSTREAM": "vertex", "RELAY_VERTEX_PROJECT": PROJECT, "RELAY_PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no stray .env file
    )


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("case", "setting", "status"),
    [
        ("plain ws:// endpoint", "RELAY_VERTEX_BASE_URL", ExitStatus.SETTINGS),
        ("unreadable CA file", "RELAY_VERTEX_CA_FILE", ExitStatus.FILE),
        ("CA file without a certificate", "RELAY_VERTEX_CA_FILE", ExitStatus.FILE),
        ("credentials of an unknown type", "RELAY_VERTEX_CREDENTIALS_FILE", ExitStatus.FILE),
        ("short token signing key", "RELAY_TOKEN_SIGNING_KEY", ExitStatus.SETTINGS),
    ],
)
def test_serve_refuses_to_start_naming_the_setting(
    case: str, setting: str, status: ExitStatus, tmp_path: Path
) -> None:
    bad = {
        "plain ws:// endpoint": {"RELAY_VERTEX_BASE_URL": "ws://vertex.internal:443"},
        "unreadable CA file": {"RELAY_VERTEX_CA_FILE": str(tmp_path / "missing.pem")},
        "CA file without a certificate": {
            "RELAY_VERTEX_CA_FILE": write(tmp_path / "ca.pem", "not a certificate\n")
        },
        "credentials of an unknown type": {
            "RELAY_VERTEX_CREDENTIALS_FILE": write(
                tmp_path / "creds.json", json.dumps({"type": "gdch_service_account"})
            )
        },
        "short token signing key": {"RELAY_TOKEN_SIGNING_KEY": "replace-me-with-48-random-bytes"},
    }[case]
    result = serve_refusal(tmp_path, **bad)
    assert result.returncode == status
    assert setting in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


def test_a_plain_ws_endpoint_is_allowed_only_with_the_explicit_opt_in() -> None:
    url = "ws://vertex.internal:9000"
    with pytest.raises(ValueError, match="RELAY_VERTEX_ALLOW_INSECURE"):
        Settings(_env_file=None, vertex_base_url=url)  # type: ignore[call-arg]
    settings = Settings(_env_file=None, vertex_base_url=url, vertex_allow_insecure=True)  # type: ignore[call-arg]
    assert settings.vertex_base_url == url


def test_the_status_label_holds_only_http_statuses() -> None:
    registry = metrics_registry()
    metrics = RelayMetrics(registry)
    for status in (403, 403, None, 999):
        metrics.record_upstream_failure("http_status", status)
    count = registry.get_sample_value
    labels = {"cause": "http_status"}
    assert count("relay_upstream_failures_total", labels | {"status": "403"}) == 2
    assert count("relay_upstream_failures_total", labels | {"status": "none"}) == 2
