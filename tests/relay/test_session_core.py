"""The session core's races, each reproduced through the real relay with the emulator's faults.

- the first `setupComplete` reaches the client whichever upstream connection delivers it;
- an end of the client leg seen by the upstream pump (uvicorn closed the client itself) is the
  client's end, not a relay error;
- a setup that arrives during a drain is refused and takes no slot;
- with resumption off, a client frame sent after the upstream closed passes the upstream's
  close on, not an internal error;
- frames held before `setupComplete` are charged their objects' cost, not only their payload.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig, Faults
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of
from tests.support.audio import silence
from tests.support.relay import RunningRelay, running_relay
from tests.support.wait import eventually

TEXT = {"generationConfig": {"responseModalities": ["TEXT"]}}
AUDIO_REPLY = {"generationConfig": {"responseModalities": ["AUDIO"]}}


def outcome(relay: RunningRelay, name: str) -> float:
    value = relay.state.metrics.sessions_total.labels("default", name)._value.get()
    return float(value)


async def reply_to(ws: ClientConnection, text: str) -> str:
    await ws.send(json.dumps({"realtimeInput": {"text": text}}))
    reply = ""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        content = message.get("serverContent", {})
        reply += "".join(
            part.get("text", "") for part in content.get("modelTurn", {}).get("parts", [])
        )
        if content.get("turnComplete"):
            return reply


@pytest.mark.parametrize(
    "faults",
    [
        Faults(close_after_frames=1, close_code=1011, fault_connections=1),
        Faults(close_after_frames=1, close_code=1000, close_reason="", fault_connections=1),
        Faults(drop_after_frames=1, fault_connections=1),
    ],
    ids=["1011", "1000", "dropped"],
)
@pytest.mark.parametrize("resumption", [None, {}], ids=["relay-only", "client-asked"])
async def test_the_first_setup_complete_reaches_the_client_across_a_switch(
    faults: Faults, resumption: dict[str, Any] | None
) -> None:
    fields: dict[str, Any] = dict(TEXT)
    if resumption is not None:
        fields["sessionResumption"] = resumption
    async with (
        Emulator(EmulatorConfig(faults=faults)) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(json.dumps({"setup": {"model": MODEL, **fields}}))
        # The setup timeout is 30 s: an answer within 10 s is the resumed connection's.
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        reply = await reply_to(ws, "hello")
        switched = relay.state.metrics.upstream_switches_total
        switches = sum(
            s.value for m in switched.collect() for s in m.samples if s.name.endswith("_total")
        )
    assert list(first) == ["setupComplete"]
    assert 'you said "hello"' in reply
    assert switches == 1


async def test_a_client_closed_by_uvicorn_while_the_model_streams_is_the_clients_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn closes 1009 on a frame over the limit; the upstream pump, still forwarding the
    echoes of the audio sent before it, must see the client leg's end, not raise uvicorn's
    RuntimeError."""
    chunk = json.dumps(
        {
            "realtimeInput": {
                "audio": {
                    "mimeType": "audio/pcm;rate=16000",
                    "data": base64.b64encode(silence(0.02)).decode(),
                }
            }
        }
    )
    oversized = json.dumps({"realtimeInput": {"text": "x" * 70_000}})
    caplog.set_level(logging.INFO)
    async with (
        Emulator(EmulatorConfig(echo_audio=True)) as emulator,
        running_relay(relay_settings(emulator, None, max_frame_bytes=65536)) as relay,
    ):
        for _ in range(6):
            async with connect(relay.url, additional_headers=auth_headers()) as ws:
                await ws.send(json.dumps({"setup": {"model": MODEL, **AUDIO_REPLY}}))
                await asyncio.wait_for(ws.recv(), timeout=10)
                for _ in range(100):  # echoed back one for one, while the next go out
                    await ws.send(chunk)
                await ws.send(oversized)
                code, _ = await close_of(ws)
            assert code == 1009

        async def all_ended() -> bool:
            return len(relay.state.sessions) == 0

        await eventually(all_ended, within=10)
        errors = outcome(relay, "error")
        closed = outcome(relay, "client_closed")
    assert errors == 0
    assert closed == 6
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_setup_sent_during_a_drain_is_refused_and_takes_no_slot(emulator: Emulator) -> None:
    async with (
        running_relay(relay_settings(emulator, None)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,  # answered before SIGTERM
    ):
        drain = asyncio.create_task(relay.state.sessions.drain(5))
        await asyncio.sleep(0)  # the drain has begun
        await ws.send(json.dumps({"setup": {"model": MODEL, **TEXT}}))
        code, reason = await close_of(ws)
        await drain
        leases = await relay.state.store.sessions("default")
        refused = outcome(relay, "drain")
    assert (code, reason) == (1001, "the relay is shutting down: reconnect")
    assert emulator.stats.setups == []
    assert leases == []
    assert refused == 1


async def test_without_resumption_a_frame_after_the_upstream_closed_passes_its_close_on() -> None:
    """The upstream refuses the fifth frame (1007) while the client sends a burst: the client
    pump meets the closed upstream before the upstream pump has seen the close."""
    refusing = Faults(
        close_after_frames=5, close_code=1007, close_reason="Request contains an invalid argument."
    )
    frame = json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "AAAA"}}})
    async with (
        Emulator(EmulatorConfig(faults=refusing)) as emulator,
        running_relay(relay_settings(emulator, None, resumption_enabled=False)) as relay,
    ):
        for _ in range(3):
            async with connect(relay.url, additional_headers=auth_headers()) as ws:
                await ws.send(json.dumps({"setup": {"model": MODEL, **TEXT}}))
                await asyncio.wait_for(ws.recv(), timeout=10)
                with contextlib.suppress(ConnectionClosed):
                    for _ in range(150):
                        await ws.send(frame)
                code, reason = await close_of(ws)
            assert (code, reason) == (1007, "Request contains an invalid argument.")
        errors = outcome(relay, "error")
    assert errors == 0


async def test_small_frames_held_before_setup_complete_are_charged_their_memory() -> None:
    """A hundred 32-byte frames are under a 4 KiB bound by their payload, over it once each
    frame's object is counted."""
    slow_setup = EmulatorConfig(faults=Faults(setup_delay_seconds=2))
    async with (
        Emulator(slow_setup) as emulator,
        running_relay(relay_settings(emulator, None, max_frame_bytes=4096)) as relay,
        connect(relay.url, additional_headers=auth_headers()) as ws,
    ):
        await ws.send(json.dumps({"setup": {"model": MODEL, **TEXT}}))
        tiny = json.dumps({"realtimeInput": {"text": ""}})
        for _ in range(100):  # 3.2 KB of payload, 9.6 KB with each frame's object
            await ws.send(tiny)
        code, reason = await close_of(ws)
    assert code == 1009
    assert "before setupComplete" in reason
