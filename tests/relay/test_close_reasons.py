"""What a client reads in a refusal's close reason: a cut reason says it was cut, and a model
refused names the models that are allowed and the setting that allows them."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from app.emulator import Emulator
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of, setup_message
from tests.support.relay import RunningRelay, running_relay

MAX_REASON_BYTES = 123  # RFC 6455


@pytest.mark.parametrize("letter", ["x", "é"], ids=["ascii", "two-byte characters"])
async def test_a_reason_too_long_for_a_close_frame_is_cut_with_a_mark(
    plain_relay: RunningRelay, letter: str
) -> None:
    model = "gemini-" + letter * 150
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(setup_message(model))
        code, reason = await close_of(ws)
    assert code == 1008
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert reason.endswith("…"), reason
    assert reason.startswith(f'model "gemini-{letter * 10}')


async def test_a_short_reason_is_sent_whole(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, allowed_models=(MODEL,))
    async with (
        running_relay(settings) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message("models/../x"))
        code, reason = await close_of(ws)
    assert code == 1008
    assert reason == f'model "../x" is not allowed (RELAY_ALLOWED_MODELS): {MODEL}'


async def test_a_refused_model_names_the_allowed_ones_and_the_setting(
    emulator: Emulator,
) -> None:
    allowed = (MODEL, "gemini-2.0-flash-live-preview-04-09")
    settings = relay_settings(emulator, None, allowed_models=allowed)
    async with (
        running_relay(settings) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message("gemini-1.0-pro"))
        code, reason = await close_of(ws)
    assert code == 1008
    assert reason == (
        'model "gemini-1.0-pro" is not allowed (RELAY_ALLOWED_MODELS): '
        "gemini-live-2.5-flash, gemini-2.0-flash-live-preview-04-09"
    )
