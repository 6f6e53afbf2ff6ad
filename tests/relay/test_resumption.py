"""Sessions that outlive their upstream connection: the relay switches connections unseen.

The emulator ends each connection after a couple of seconds (goAway, then 1000), so a session
of a few seconds crosses several connections. The client must notice nothing: no goAway, no
close, its conversation intact, every frame it sent taken in once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from google.genai import live, types
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator, EmulatorConfig
from tests.relay.conftest import MODEL, auth_headers, relay_settings, sdk_client
from tests.support.audio import INPUT_RATE, pcm_chunks, silence
from tests.support.relay import RunningRelay, running_relay
from tests.support.sdk import receive_turn, texts
from tests.support.tls import TLSFiles

TEXT = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
SHORT_LIVED = EmulatorConfig(connection_lifetime_seconds=1.5, goaway_notice_seconds=0.5)


def switches(relay: RunningRelay, cause: str | None = None) -> float:
    """Switches counted by the relay's metrics, of one cause or all."""
    registry = relay.state.metrics.upstream_switches_total
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and cause in (None, sample.labels["cause"]):
                total += sample.value
    return total


async def wait_for_connections(emulator: Emulator, count: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while emulator.stats.connections_accepted < count:
            await asyncio.sleep(0.05)


async def ask(session: live.AsyncSession, text: str) -> str:
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
    )
    return texts(await receive_turn(session))


@contextlib.asynccontextmanager
async def streaming_silence(session: live.AsyncSession) -> AsyncIterator[list[bytes]]:
    """Send 20 ms chunks of silence, paced like a microphone, until the block ends; yield the
    chunks sent so far (silence makes no turn: the conversation is only the typed text)."""
    sent: list[bytes] = []

    async def stream() -> None:
        chunk = pcm_chunks(silence(0.02))[0]
        while True:
            await session.send_realtime_input(
                audio=types.Blob(data=chunk, mime_type=f"audio/pcm;rate={INPUT_RATE}")
            )
            sent.append(chunk)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(stream())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def reply_number(reply: str) -> int:
    match = re.match(r"Reply (\d+):", reply)
    assert match, reply
    return int(match.group(1))


async def test_an_sdk_session_keeps_its_conversation_across_three_upstream_switches(
    tls_files: TLSFiles,
) -> None:
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        client = sdk_client(relay, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
            first = await ask(session, "remember this: my cat is called Tibbles")
            async with streaming_silence(session) as audio:
                await wait_for_connections(emulator, 4)  # three switches, audio flowing
                recalled = await ask(session, "what is my cat called?")
                replies = [await ask(session, f"question {n}") for n in range(3, 6)]
                await wait_for_connections(emulator, 6)
                replies.append(await ask(session, "question 6"))
            assert len(audio) > 100
    assert reply_number(first) == 1
    assert reply_number(recalled) == 2  # one earlier turn, kept by every switch
    assert 'Before that you said "remember this: my cat is called Tibbles"' in recalled
    numbers = [reply_number(reply) for reply in replies]
    assert numbers == [3, 4, 5, 6], replies  # no turn lost or answered twice
    assert switches(relay) >= 5
    assert emulator.stats.closes_received.count((1000, "switched to a new connection")) >= 1


async def open_raw_session(relay: RunningRelay, **setup: Any) -> ClientConnection:
    ws = await connect(relay.url, additional_headers=auth_headers())
    await ws.send(json.dumps({"setup": {"model": MODEL, **setup}}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    return ws


async def frames_until_turn_complete(ws: ClientConnection) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame.get("serverContent", {}).get("turnComplete"):
                return frames


def text_turn(text: str) -> str:
    return json.dumps(
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": text}]}],
                "turnComplete": True,
            }
        }
    )


async def test_a_client_sees_no_goaway_and_no_relay_resumption_update_it_did_not_ask_for() -> None:
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        ws = await open_raw_session(relay, generationConfig={"responseModalities": ["TEXT"]})
        seen: list[dict[str, Any]] = []
        for n in range(6):
            await ws.send(text_turn(f"turn {n}"))
            seen += await frames_until_turn_complete(ws)
            await asyncio.sleep(0.6)
        await ws.close()
    assert emulator.stats.connections_accepted >= 3
    kinds = {key for frame in seen for key in frame}
    assert "goAway" not in kinds
    assert "sessionResumptionUpdate" not in kinds
    assert all(setup["sessionResumption"]["transparent"] for setup in emulator.stats.setups)


async def test_a_client_that_asked_for_resumption_gets_its_updates_and_can_resume_through_a_new_relay(
    tls_files: TLSFiles,
) -> None:
    async with Emulator(SHORT_LIVED) as emulator:
        handle = None
        async with running_relay(relay_settings(emulator, tls_files)) as relay:
            client = sdk_client(relay, tls_files)
            config = TEXT.model_copy(update={"session_resumption": types.SessionResumptionConfig()})
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await ask(session, "remember pears")
                async with asyncio.timeout(10):
                    async for message in session.receive():
                        update = message.session_resumption_update
                        if update and update.resumable and update.new_handle:
                            handle = update.new_handle
                            break
        assert handle
        # A relay restart: another relay, the same upstream, the client's own handle.
        async with running_relay(relay_settings(emulator, tls_files)) as restarted:
            client = sdk_client(restarted, tls_files)
            resumed = TEXT.model_copy(
                update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
            )
            async with client.aio.live.connect(model=MODEL, config=resumed) as session:
                await wait_for_connections(emulator, emulator.stats.connections_accepted + 2)
                reply = await ask(session, "what did I say?")
    assert 'Before that you said "remember pears"' in reply
