"""What the relay does with the setup frame, and how closes cross from one leg to the other."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig, Faults
from app.relay.session.session import HELD_FRAME_OVERHEAD_BYTES
from tests.relay.conftest import MODEL, assert_reached_no_upstream, auth_headers, relay_settings
from tests.support.net import free_port
from tests.support.relay import RunningRelay, running_relay


def setup_message(model: str = MODEL, **fields: Any) -> str:
    return json.dumps({"setup": {"model": model, **fields}})


def text_turn(text: str) -> str:
    return json.dumps(
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": text}]}],
                "turnComplete": True,
            }
        }
    )


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    """Read until the relay closes; return the close code and reason it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout=10)
    received = closed.value.rcvd
    assert received is not None, "the relay dropped the connection without a close frame"
    return received.code, received.reason


async def open_session(relay: RunningRelay, model: str = MODEL, **fields: Any) -> ClientConnection:
    ws = await connect(relay.url, additional_headers=auth_headers(), compression=None)
    await ws.send(setup_message(model, **fields))
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in first
    return ws


@pytest.mark.parametrize(
    "model",
    [
        MODEL,
        f"models/{MODEL}",
        f"publishers/google/models/{MODEL}",
        f"projects/live-relay-dev/locations/us-central1/publishers/google/models/{MODEL}",
    ],
)
async def test_every_model_spelling_is_rewritten_to_the_vertex_path(
    plain_relay: RunningRelay, emulator: Emulator, model: str
) -> None:
    ws = await open_session(plain_relay, model)
    await ws.close()
    expected = f"projects/live-relay-dev/locations/us-central1/publishers/google/models/{MODEL}"
    assert emulator.stats.setups[-1]["model"] == expected


async def test_setup_fields_reach_the_upstream_untouched(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    system = {"parts": [{"text": "Answer like a pirate."}]}
    ws = await open_session(
        plain_relay, generation_config={"response_modalities": ["TEXT"]}, systemInstruction=system
    )
    await ws.close()
    seen = emulator.stats.setups[-1]
    assert seen["generationConfig"] == {
        "responseModalities": ["TEXT"]
    }  # as the emulator normalizes it
    assert seen["systemInstruction"] == system


@pytest.mark.parametrize(
    ("model", "named"),
    [
        ("gemini-0.1-nonexistent", "gemini-0.1-nonexistent"),
        (
            f"projects/other/locations/us-central1/publishers/google/models/{MODEL}",
            "projects/other",
        ),
    ],
)
async def test_a_refused_model_closes_1008_naming_it_and_reaches_no_upstream(
    plain_relay: RunningRelay, emulator: Emulator, model: str, named: str
) -> None:
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(setup_message(model))
        code, reason = await close_of(ws)
    assert code == 1008
    assert named in reason
    await assert_reached_no_upstream(emulator)


@pytest.mark.parametrize(
    "first_frame",
    [
        "not json",
        json.dumps({"clientContent": {"turnComplete": True}}),
        json.dumps([1, 2]),
        json.dumps({"setup": {"model": MODEL}, "extra": 1}),
    ],
)
async def test_a_first_frame_that_is_not_a_setup_closes_1007(
    plain_relay: RunningRelay, emulator: Emulator, first_frame: str
) -> None:
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(first_frame)
        code, reason = await close_of(ws)
    assert code == 1007
    assert "setup" in reason
    await assert_reached_no_upstream(emulator)


async def test_an_oversize_frame_after_setup_closes_1009(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, max_frame_bytes=2048, max_setup_frame_bytes=4096)
    async with running_relay(settings) as relay:
        ws = await open_session(relay)
        await ws.send("x" * 3000)
        code, reason = await close_of(ws)
    assert code == 1009
    assert "3000" in reason


async def test_an_oversize_setup_frame_closes_1009(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, max_frame_bytes=2048, max_setup_frame_bytes=4096)
    async with (
        running_relay(settings) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message(systemInstruction={"parts": [{"text": "x" * 5000}]}))
        code, _ = await close_of(ws)
    assert code == 1009
    await assert_reached_no_upstream(emulator)


async def test_an_unreachable_upstream_closes_1011_saying_so(emulator: Emulator) -> None:
    settings = relay_settings(emulator, None, emulator_url=f"ws://127.0.0.1:{free_port()}")
    async with (
        running_relay(settings) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message())
        code, reason = await close_of(ws)
    assert code == 1011
    assert "upstream unavailable" in reason


async def test_an_upstream_refusing_the_handshake_closes_1011_with_its_status() -> None:
    config = EmulatorConfig(require_token="only-this", auth_failure="reject")
    async with (
        Emulator(config) as strict,
        running_relay(relay_settings(strict, None)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message())
        code, reason = await close_of(ws)
    assert code == 1011
    assert "HTTP 401" in reason


async def test_an_upstream_close_reaches_the_client_with_its_code_and_reason() -> None:
    faults = Faults(close_after_frames=2, close_code=1011, close_reason="Deadline expired.")
    async with (
        Emulator(EmulatorConfig(faults=faults)) as failing,
        running_relay(relay_settings(failing, None)) as relay,
    ):
        ws = await open_session(relay)
        await ws.send(text_turn("hello"))
        code, reason = await close_of(ws)
    assert (code, reason) == (1011, "Deadline expired.")


async def test_an_upstream_dropping_tcp_gives_the_client_1011_not_1006() -> None:
    async with (
        Emulator(EmulatorConfig(faults=Faults(drop_after_frames=2))) as dropping,
        running_relay(relay_settings(dropping, None)) as relay,
    ):
        ws = await open_session(relay)
        await ws.send(text_turn("hello"))
        code, reason = await close_of(ws)
    assert code == 1011
    assert "upstream" in reason


async def test_a_client_close_reaches_the_upstream_with_its_code_and_reason(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(plain_relay)
    await ws.close(4001, "user hung up")
    for _ in range(200):
        if emulator.stats.closes_received:
            break
        await asyncio.sleep(0.01)
    assert emulator.stats.closes_received[-1] == (4001, "user hung up")
    assert len(plain_relay.state.sessions) == 0


async def test_input_held_for_setup_complete_is_bounded_by_one_largest_frame() -> None:
    # The upstream is slow to answer the setup; whatever the client sends meanwhile is held in
    # memory, so past one largest frame's worth the session ends instead of growing.
    config = EmulatorConfig(faults=Faults(setup_delay_seconds=5))
    settings_overrides = {"max_frame_bytes": 2048, "max_setup_frame_bytes": 4096}
    async with (
        Emulator(config) as slow,
        running_relay(relay_settings(slow, None, **settings_overrides)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message())
        chunk = json.dumps({"realtimeInput": {"text": "x" * 900}})
        for _ in range(3):
            await ws.send(chunk)
        code, reason = await close_of(ws)
    assert code == 1009
    held = 3 * (len(chunk) + HELD_FRAME_OVERHEAD_BYTES)  # each frame's object counts too
    assert f"{held} bytes sent before setupComplete" in reason
    assert slow.stats.texts == []


async def test_frames_sent_before_setup_complete_arrive_in_order_after_it() -> None:
    config = EmulatorConfig(faults=Faults(setup_delay_seconds=0.3))
    async with (
        Emulator(config) as slow,
        running_relay(relay_settings(slow, None)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(setup_message(generationConfig={"responseModalities": ["TEXT"]}))
        for word in ("first", "second", "third"):
            await ws.send(json.dumps({"realtimeInput": {"text": word}}))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert "setupComplete" in first
        for _ in range(300):
            if len(slow.stats.texts) == 3:
                break
            await asyncio.sleep(0.01)
    assert slow.stats.texts == ["first", "second", "third"]


async def test_binary_frames_stay_binary_both_ways(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(setup_message(generationConfig={"responseModalities": ["TEXT"]}).encode())
        setup_complete = await asyncio.wait_for(ws.recv(), timeout=10)
        assert isinstance(setup_complete, bytes)
        await ws.send(text_turn("binary please").encode())
        reply = await asyncio.wait_for(ws.recv(), timeout=10)
        assert isinstance(reply, bytes)
    assert emulator.stats.binary_frames >= 2


async def test_a_close_reason_is_cut_to_123_bytes_on_a_character_boundary(
    plain_relay: RunningRelay,
) -> None:
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(setup_message("modèle-" + "é" * 200))
        code, reason = await close_of(ws)
    assert code == 1008
    assert reason.startswith('model "modèle-éé')
    assert 120 <= len(reason.encode()) <= 123
