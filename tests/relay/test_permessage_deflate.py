"""permessage-deflate on either leg, as the settings offer it (both off by default).

Audio in base64 JSON compresses little and costs more CPU to compress than to forward
(docs/performance.md), so the relay offers neither leg compression unless told to. Told to,
a session works as without it: compressed frames are read by the `websockets` protocols
rather than the fast lane, and every rule of the session holds.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from app.emulator import Emulator, EmulatorConfig
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_resumption import frames_until_turn_complete
from tests.relay.test_setup_and_closes import close_of, text_turn
from tests.support.audio import silence
from tests.support.relay import RunningRelay, running_relay


def audio_chunk() -> str:
    audio = {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(silence(0.1)).decode()}
    return json.dumps({"realtimeInput": {"audio": audio}})


async def converse(ws: ClientConnection) -> None:
    """A setup, audio, a text turn answered to its end, a refused second setup: the session's
    rules hold over compressed frames too."""
    await ws.send(json.dumps({"setup": {"model": MODEL}}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), 10))
    for _ in range(5):
        await ws.send(audio_chunk())
    await ws.send(text_turn("hello"))
    frames = await frames_until_turn_complete(ws)
    assert frames[-1]["serverContent"]["turnComplete"]
    await ws.send(json.dumps({"setup": {"model": MODEL}}))
    assert await close_of(ws) == (1007, "setup comes once, as the first message")


def compressed(ws: ClientConnection) -> bool:
    return any(isinstance(extension, PerMessageDeflate) for extension in ws.protocol.extensions)


@pytest.mark.parametrize("offered", [True, False])
async def test_the_client_leg_compresses_only_when_the_relay_offers_it(offered: bool) -> None:
    async with (
        Emulator(EmulatorConfig()) as emulator,
        running_relay(relay_settings(emulator, None, client_permessage_deflate=offered)) as relay,
    ):
        # websockets' client offers permessage-deflate by default, as the SDKs do.
        async with connect(relay.url, additional_headers=auth_headers()) as ws:
            assert compressed(ws) is offered
            await converse(ws)
        await wait_until_ended(relay)


@pytest.mark.parametrize("accepted", [True, False])
async def test_the_upstream_leg_compresses_when_offered_and_the_upstream_accepts(
    accepted: bool,
) -> None:
    async with (
        Emulator(EmulatorConfig(permessage_deflate=accepted)) as emulator,
        running_relay(relay_settings(emulator, None, upstream_permessage_deflate=True)) as relay,
    ):
        async with connect(relay.url, additional_headers=auth_headers(), compression=None) as ws:
            await converse(ws)
        assert emulator.stats.compressed_connections == (1 if accepted else 0)
        await wait_until_ended(relay)


async def wait_until_ended(relay: RunningRelay) -> None:
    async with asyncio.timeout(5):
        while len(relay.state.sessions):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
