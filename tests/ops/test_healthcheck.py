"""docker/healthcheck.py, the image's HEALTHCHECK, against real servers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.ops.asgi_server import serving
from tests.ops.deployment_files import ROOT
from tests.support.net import free_port
from tests.support.tls import TLSFiles

HEALTHCHECK = ROOT / "docker" / "healthcheck.py"


def health_app(status: int) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok" if status == 200 else "failing"}, status_code=status)

    return Starlette(routes=[Route("/healthz", healthz)])


async def run_healthcheck(tmp_path: Path, **relay_env: str) -> int:
    """Exit status of the health check run as the image runs it, with these RELAY_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        env=env | relay_env | {"PYTHONPATH": str(ROOT)},
        cwd=tmp_path,  # no .env here: only the variables above count
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthy_when_healthz_answers_200(tmp_path: Path) -> None:
    async with serving(health_app(200)) as port:
        assert await run_healthcheck(tmp_path, RELAY_PORT=str(port)) == 0


async def test_unhealthy_when_healthz_answers_an_error(tmp_path: Path) -> None:
    async with serving(health_app(503)) as port:
        assert await run_healthcheck(tmp_path, RELAY_PORT=str(port)) == 1


async def test_unhealthy_when_nothing_listens(tmp_path: Path) -> None:
    assert await run_healthcheck(tmp_path, RELAY_PORT=str(free_port())) == 1


async def test_probes_over_https_when_the_relay_serves_tls(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    app = health_app(200)
    async with serving(app, cert_file=tls_files.cert_file, key_file=tls_files.key_file) as port:
        status = await run_healthcheck(
            tmp_path,
            RELAY_PORT=str(port),
            RELAY_TLS_CERT_FILE=str(tls_files.cert_file),
            RELAY_TLS_KEY_FILE=str(tls_files.key_file),
        )
    assert status == 0
