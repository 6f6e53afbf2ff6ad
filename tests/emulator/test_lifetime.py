"""The connection lifetime holds whatever the connection is doing, and on every resumed one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from tests.emulator.support import (
    TEXT,
    raw_connection,
    raw_reply_text,
    raw_setup,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
    until_closed,
)
from tests.support.audio import silence

SILENCE = json.dumps(
    {
        "realtimeInput": {
            "audio": {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(silence(0.02)).decode(),
            }
        }
    }
)


async def stream_silence(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send(SILENCE)
            await asyncio.sleep(0.02)


def assert_ended_by_lifetime(
    ws: ClientConnection, messages: list[dict[str, Any]], notice: float = 0.5
) -> None:
    """One goAway giving at most `notice` seconds, then the close Vertex sends."""
    go_aways = [m["goAway"] for m in messages if "goAway" in m]
    assert len(go_aways) == 1
    time_left = go_aways[0]["timeLeft"]
    assert time_left.endswith("s")
    assert 0 < float(time_left[:-1]) <= notice
    assert (ws.close_code, ws.close_reason) == (1000, "The operation was cancelled.")


async def test_the_default_notice_is_the_50s_observed_from_vertex() -> None:
    config = EmulatorConfig(connection_lifetime_seconds=50.2)
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_setup_complete(ws)
        go_away = await recv_json(ws)

    assert go_away == {"goAway": {"timeLeft": "50s"}}


async def test_a_notice_longer_than_the_lifetime_comes_after_setup_complete() -> None:
    config = EmulatorConfig(connection_lifetime_seconds=0.5)  # 50 s of notice covers it all
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_setup_complete(ws)
        messages = await until_closed(ws)

    assert_ended_by_lifetime(ws, messages)


@pytest.mark.parametrize(
    "activity", ["waiting for setup", "idle", "streaming audio", "replying", "holding a tool call"]
)
async def test_the_lifetime_ends_a_connection_whatever_it_is_doing(activity: str) -> None:
    # Replies slow enough to outlast the connection.
    config = EmulatorConfig(
        connection_lifetime_seconds=1.0,
        goaway_notice_seconds=0.5,
        reply_chunk_interval_seconds=0.2,
        reply_chunk_chars=1,
    )
    tools = [{"functionDeclarations": [{"name": "lookup"}]}]
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        background: asyncio.Task[None] | None = None
        if activity != "waiting for setup":
            await ws.send(raw_setup(**TEXT, tools=tools))
            await recv_setup_complete(ws)
        if activity == "streaming audio":
            background = asyncio.create_task(stream_silence(ws))
        elif activity == "replying":
            await ws.send(json.dumps({"realtimeInput": {"text": "tell me a long story"}}))
        elif activity == "holding a tool call":
            await ws.send(json.dumps({"realtimeInput": {"text": "lookup something"}}))
        messages = await until_closed(ws)
        if background is not None:
            await background

    if activity == "waiting for setup":
        # Nothing is ever sent before setupComplete, a goAway included.
        assert messages == []
        assert (ws.close_code, ws.close_reason) == (1000, "The operation was cancelled.")
    else:
        assert_ended_by_lifetime(ws, messages)
    if activity == "holding a tool call":
        assert any("toolCall" in m for m in messages)
    if activity == "replying":
        assert raw_reply_text(messages)  # the reply was under way


async def test_the_lifetime_ends_echo_mode_connections_too() -> None:
    config = EmulatorConfig(
        connection_lifetime_seconds=1.0, goaway_notice_seconds=0.5, echo_audio=True
    )
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_setup_complete(ws)
        streaming = asyncio.create_task(stream_silence(ws))
        messages = await until_closed(ws)
        await streaming

    assert_ended_by_lifetime(ws, messages)


async def test_every_resumed_connection_has_its_own_lifetime_and_the_conversation_goes_on() -> None:
    config = EmulatorConfig(connection_lifetime_seconds=1.5, goaway_notice_seconds=0.75)
    setup = {**TEXT, "sessionResumption": {}}
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**setup))
            await recv_setup_complete(ws)
            await ws.send(json.dumps({"realtimeInput": {"text": "remember kiwi"}}))
            first = await until_closed(ws)
        assert_ended_by_lifetime(ws, first, 0.75)
        handle = [
            u["newHandle"]
            for m in first
            if (u := m.get("sessionResumptionUpdate")) and u["resumable"]
        ][-1]
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT, sessionResumption={"handle": handle}))
            await recv_setup_complete(ws)
            await ws.send(json.dumps({"realtimeInput": {"text": "what did I say?"}}))
            second_turn = await recv_raw_turn(ws)
            rest = await until_closed(ws)
        assert_ended_by_lifetime(ws, second_turn + rest, 0.75)

    assert 'Before that you said "remember kiwi"' in raw_reply_text(second_turn)
