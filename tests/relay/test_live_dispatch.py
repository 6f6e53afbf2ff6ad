"""`WS /v1/live` is served past FastAPI's router and middlewares (app/relay/live_dispatch.py):
only that exact path, and under a root path the route serves it as before. Real uvicorn, real
sockets, the emulator upstream."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from app.emulator import Emulator
from app.factory import create_app
from app.serve import uvicorn_config
from tests.relay.conftest import auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of, setup_message, text_turn
from tests.support.asgi import serving
from tests.support.relay import RunningRelay


async def _text_turn_answers(url: str) -> None:
    async with connect(url, additional_headers=auth_headers(), compression=None) as ws:
        await ws.send(setup_message())
        assert "setupComplete" in json.loads(await ws.recv(decode=False))
        await ws.send(text_turn("hello"))
        while True:
            message = json.loads(await ws.recv(decode=False))
            if message.get("serverContent", {}).get("turnComplete"):
                return


async def test_the_live_path_serves_a_session(plain_relay: RunningRelay) -> None:
    await _text_turn_answers(plain_relay.url)


@pytest.mark.parametrize("path", ["/v1/live/", "/v1/livex", "/v1/live/v1/live"])
async def test_paths_that_only_start_like_the_live_path_are_refused_as_unknown(
    plain_relay: RunningRelay, path: str
) -> None:
    url = plain_relay.url.removesuffix("/v1/live") + path
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, additional_headers=auth_headers())
    assert refused.value.response.status_code == 404
    assert b"/v1/live" in refused.value.response.body
    async with connect(url, origin=Origin("http://localhost:3000")) as browser:
        code, reason = await close_of(browser)  # a browser cannot read a refusal's body
    assert code == 4404
    assert "/v1/live" in reason


async def test_under_a_root_path_the_route_serves_the_session(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None)
    config = uvicorn_config(settings, create_app(settings), configure_logs=False)
    config.root_path = "/relay"  # uvicorn puts it in every scope: the direct dispatch stands aside
    async with serving(config) as port:
        await _text_turn_answers(f"ws://127.0.0.1:{port}/v1/live")
