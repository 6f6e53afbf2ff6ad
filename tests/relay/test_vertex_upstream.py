"""The Vertex connector with google-auth's real service-account flow, against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from app.emulator import Emulator, EmulatorConfig
from app.settings import Settings
from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.relay.test_setup_and_closes import close_of
from tests.support.relay import RunningRelay, running_relay
from tests.support.token_server import TokenServer, token_server, write_service_account


def vertex_settings(emulator: Emulator, credentials: Path, **overrides: object) -> Settings:
    values = {
        "upstream": "vertex",
        "vertex_base_url": emulator.base_url,
        "vertex_allow_insecure": True,  # a plain ws:// emulator: these tests are about tokens
        "vertex_credentials_file": credentials,
        "vertex_project": "test-project",
        "api_keys": (API_KEY,),
        "token_signing_key": "test-signing-key-" + "s" * 32,
        "port": 0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


async def start_session(relay: RunningRelay) -> None:
    async with connect(relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


def accepts_current_token(tokens: TokenServer) -> EmulatorConfig:
    return EmulatorConfig(
        require_token=lambda token: bool(tokens.issued) and token == tokens.issued[-1]
    )


async def test_concurrent_sessions_share_one_token_refresh(tmp_path: Path) -> None:
    with token_server(delay_seconds=0.2) as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url)
        async with (
            Emulator(accepts_current_token(tokens)) as emulator,
            running_relay(vertex_settings(emulator, credentials)) as relay,
        ):
            await asyncio.gather(*(start_session(relay) for _ in range(8)))
            assert tokens.issued == ["ya29.test-token-1"]
            assert emulator.stats.last_authorization == "Bearer ya29.test-token-1"
            setup = emulator.stats.setups[-1]
    assert (
        setup["model"]
        == f"projects/test-project/locations/us-central1/publishers/google/models/{MODEL}"
    )


async def test_a_token_is_refreshed_in_the_background_before_a_session_needs_it(
    tmp_path: Path,
) -> None:
    with token_server(expires_in=4) as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url)
        async with (
            Emulator(accepts_current_token(tokens)) as emulator,
            running_relay(
                vertex_settings(emulator, credentials, token_refresh_margin_seconds=2.0)
            ) as relay,
        ):
            await start_session(relay)
            await start_session(relay)
            assert len(tokens.issued) == 1  # fetched at start-up, still fresh: reused
            # Past the margin before its expiry, with no session asking for a token.
            await asyncio.sleep(tokens.expires_at[tokens.issued[0]] - 2.0 + 0.5 - time.time())
            assert len(tokens.issued) == 2
            await start_session(relay)
            assert len(tokens.issued) == 2
            assert emulator.stats.last_authorization == "Bearer ya29.test-token-2"


async def test_an_upstream_rejecting_the_token_closes_the_client_1008(tmp_path: Path) -> None:
    with token_server() as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url)
        async with (
            Emulator(EmulatorConfig(require_token="some-other-token")) as emulator,
            running_relay(vertex_settings(emulator, credentials)) as relay,
            connect(relay.url, additional_headers=auth_headers()) as ws,
        ):
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            code, _ = await close_of(ws)
    assert code == 1008


async def test_unusable_credentials_close_1011_and_fail_readiness(tmp_path: Path) -> None:
    with token_server() as tokens:
        credentials = write_service_account(tmp_path / "sa.json", tokens.url + "/missing")
    # The token server is gone: every refresh fails.
    async with (
        Emulator() as emulator,
        running_relay(vertex_settings(emulator, credentials)) as relay,
    ):
        async with connect(relay.url, additional_headers=auth_headers()) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            code, reason = await close_of(ws)
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"{relay.http_url}/readyz")
    assert (code, reason) == (1011, "upstream credentials unusable")
    assert ready.status_code == 503
    assert ready.json()["checks"]["upstream_credentials"] == "unusable"
