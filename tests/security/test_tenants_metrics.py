"""/metrics lists every project's name, sessions, token use and limits: `live-relay serve` keeps
it off the port clients reach, on a port of its own, unless told otherwise with a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from app.settings import Settings
from tests.security.tenants_support import ALPHA_KEY, PROJECTS, open_session, setup_message
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess


def test_by_default_serve_puts_metrics_on_a_port_of_their_own() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.metrics_on_client_port
    assert settings.metrics_port == 9100 != settings.port


async def test_a_client_of_serve_cannot_read_the_metrics(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_REDIS_URL": redis_server.url,
            "RELAY_PROJECTS_FILE": str(projects),
            "RELAY_METRICS_PORT": str(metrics_port),
        },
        tmp_path / "relay.log",
    )
    try:
        ws = await open_session(relay.url(), ALPHA_KEY, setup_message())
        async with httpx.AsyncClient() as http:
            on_client_port = await http.get(f"http://127.0.0.1:{relay.port}/metrics")
            on_metrics_port = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        await ws.close()
    finally:
        relay.kill()
    assert on_client_port.status_code == 404
    assert "alpha" not in on_client_port.text
    assert on_metrics_port.status_code == 200
    assert 'relay_sessions_active{project="alpha"} 1.0' in on_metrics_port.text


def test_serve_refuses_metrics_on_the_client_port_without_a_token(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "RELAY_UPSTREAM": "emulator",
        "RELAY_API_KEYS": ALPHA_KEY,
        "RELAY_PORT": str(free_port()),
        "RELAY_METRICS_ON_CLIENT_PORT": "true",
    }
    started = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert started.returncode == 2
    assert "RELAY_METRICS_TOKEN" in started.stderr


async def test_metrics_on_the_client_port_need_the_token(tmp_path: Path) -> None:
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": ALPHA_KEY,
            "RELAY_METRICS_ON_CLIENT_PORT": "true",
            "RELAY_METRICS_TOKEN": "scrape-secret-for-tests",
        },
        tmp_path / "relay.log",
    )
    try:
        async with httpx.AsyncClient() as http:
            anonymous = await http.get(f"http://127.0.0.1:{relay.port}/metrics")
            scraper = await http.get(
                f"http://127.0.0.1:{relay.port}/metrics",
                headers={"Authorization": "Bearer scrape-secret-for-tests"},
            )
    finally:
        relay.kill()
    assert anonymous.status_code == 401
    assert scraper.status_code == 200
