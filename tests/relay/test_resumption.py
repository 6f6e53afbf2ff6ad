"""Sessions that outlive their upstream connection: the relay switches connections unseen.

The emulator ends each connection after a couple of seconds (goAway, then 1000), so a session
of a few seconds crosses several connections. The client must notice nothing: no goAway, no
close, its conversation intact, every frame it sent taken in once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from google.genai import live, types
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.auth.keys import hash_api_key
from app.emulator import Emulator, EmulatorConfig, Faults
from tests.relay.conftest import MODEL, auth_headers, relay_settings, sdk_client
from tests.relay.test_setup_and_closes import close_of
from tests.support.audio import INPUT_RATE, pcm_chunks, silence
from tests.support.relay import RunningRelay, running_relay
from tests.support.sdk import receive_turn, texts
from tests.support.tls import TLSFiles

TEXT = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
SHORT_LIVED = EmulatorConfig(connection_lifetime_seconds=1.5, goaway_notice_seconds=0.5)


def switches(relay: RunningRelay, cause: str | None = None, mode: str | None = None) -> float:
    """Switches counted by the relay's metrics, of one cause and mode, or all."""
    registry = relay.state.metrics.upstream_switches_total
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and cause in (None, labels["cause"])
                and mode in (None, labels["mode"])
            ):
                total += sample.value
    return total


async def wait_for_connections(emulator: Emulator, count: int) -> None:
    async with asyncio.timeout(30):
        while emulator.stats.connections_accepted < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


class SentLog:
    """Digests of what a client sent, in the order it went on the wire, to compare with what
    the emulator's conversation consumed (`EmulatorStats.consumed`)."""

    def __init__(self) -> None:
        self.digests: list[str] = []
        self.kinds: list[str] = []

    def add(self, kind: str, payload: bytes) -> None:
        # Appended right before the send, which writes without awaiting first: wire order.
        self.kinds.append(kind)
        self.digests.append(hashlib.sha256(payload).hexdigest())


async def ask(session: live.AsyncSession, text: str, sent: SentLog) -> str:
    """A typed question (realtimeInput.text), and the reply to it."""
    sent.add("text", text.encode())
    await session.send_realtime_input(text=text)
    return texts(await receive_turn(session))


@contextlib.asynccontextmanager
async def streaming_silence(session: live.AsyncSession, sent: SentLog) -> AsyncIterator[None]:
    """Send 20 ms chunks of silence, paced like a microphone, until the block ends (silence
    makes no turn: the conversation is only the typed text)."""
    chunk = pcm_chunks(silence(0.02))[0]

    async def stream() -> None:
        while True:
            sent.add("audio", chunk)
            await session.send_realtime_input(
                audio=types.Blob(data=chunk, mime_type=f"audio/pcm;rate={INPUT_RATE}")
            )
            await asyncio.sleep(0.02)

    task = asyncio.create_task(stream())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def reply_number(reply: str) -> int:
    match = re.match(r"Reply (\d+):", reply)
    assert match, reply
    return int(match.group(1))


async def test_an_sdk_session_keeps_its_conversation_and_input_across_upstream_switches(
    tls_files: TLSFiles,
) -> None:
    sent = SentLog()
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        client = sdk_client(relay, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
            first = await ask(session, "remember this: my cat is called Tibbles", sent)
            async with streaming_silence(session, sent):
                await wait_for_connections(emulator, 4)  # three switches, audio flowing
                recalled = await ask(session, "what is my cat called?", sent)
                replies = [await ask(session, f"question {n}", sent) for n in range(3, 6)]
                await wait_for_connections(emulator, 6)
                replies.append(await ask(session, "question 6", sent))
            # Answered after the last chunk: everything before it has been consumed.
            replies.append(await ask(session, "question 7", sent))
        consumed = list(emulator.stats.consumed)
    assert reply_number(first) == 1
    assert reply_number(recalled) == 2  # one earlier turn, kept by every switch
    assert 'Before that you said "remember this: my cat is called Tibbles"' in recalled
    numbers = [reply_number(reply) for reply in replies]
    assert numbers == [3, 4, 5, 6, 7], replies  # no turn lost or answered twice
    assert switches(relay) >= 5
    assert emulator.stats.closes_received.count((1000, "switched to a new connection")) >= 4
    # Every frame the client sent is in the conversation once, in order, across connections.
    assert len({record.session for record in consumed}) == 1
    assert max(record.connection for record in consumed) >= 6
    assert [record.kind for record in consumed] == sent.kinds
    assert [record.digest for record in consumed] == sent.digests
    assert sent.kinds.count("audio") > 100


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


async def next_resumable_handle(ws: ClientConnection) -> str:
    async with asyncio.timeout(10):
        while True:
            update = json.loads(await ws.recv()).get("sessionResumptionUpdate", {})
            if update.get("resumable") and update.get("newHandle"):
                handle: str = update["newHandle"]
                return handle


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
        leases = []
        for n in range(6):
            await ws.send(text_turn(f"turn {n}"))
            seen += await frames_until_turn_complete(ws)
            await asyncio.sleep(0.6)
            leases.append(len(await relay.state.store.sessions("default")))
        await ws.close()
        tokens = relay.state.metrics.tokens_total
        prompt_tokens = tokens.labels("default", "prompt")._value.get()
    assert emulator.stats.connections_accepted >= 3
    kinds = {key for frame in seen for key in frame}
    assert "goAway" not in kinds
    assert "sessionResumptionUpdate" not in kinds
    assert all(setup["sessionResumption"]["transparent"] for setup in emulator.stats.setups)
    assert leases == [1] * 6  # one session, one quota slot, whatever the connections
    # Token accounting went on across the switches: every turn's usage was charged.
    reported = sum(
        frame["usageMetadata"]["promptTokenCount"] for frame in seen if "usageMetadata" in frame
    )
    assert prompt_tokens == reported > 0


async def test_a_client_that_asked_for_resumption_gets_updates_and_resumes_via_another_relay(
    tls_files: TLSFiles,
) -> None:
    sent = SentLog()
    async with Emulator(SHORT_LIVED) as emulator:
        handle = None
        async with running_relay(relay_settings(emulator, tls_files)) as relay:
            client = sdk_client(relay, tls_files)
            config = TEXT.model_copy(update={"session_resumption": types.SessionResumptionConfig()})
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await ask(session, "remember pears", sent)
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
                reply = await ask(session, "what did I say?", sent)
        consumed = list(emulator.stats.consumed)
    assert 'Before that you said "remember pears"' in reply
    assert len({record.session for record in consumed}) == 1  # one conversation throughout
    assert [record.digest for record in consumed] == sent.digests


async def wait_until_released(relay: RunningRelay) -> None:
    async with asyncio.timeout(10):
        while len(relay.state.sessions):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_handle_the_upstream_refuses_closes_the_client_1011_saying_so() -> None:
    expiring = EmulatorConfig(
        connection_lifetime_seconds=1.5, goaway_notice_seconds=0.5, handle_ttl_seconds=0.2
    )
    async with (
        Emulator(expiring) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        ws = await open_raw_session(relay, generationConfig={"responseModalities": ["TEXT"]})
        await ws.send(text_turn("hello"))
        await frames_until_turn_complete(ws)  # a handle, expired long before the switch
        code, reason = await close_of(ws)
        await wait_until_released(relay)
        failures = relay.state.metrics.upstream_switch_failures_total
        refused = failures.labels("refused")._value.get()
    assert code == 1011
    assert (
        reason
        == "upstream refused to resume the session: 1008 BidiGenerateContent session not found"
    )
    assert refused == 1


async def test_a_resumed_connection_that_stalls_past_the_deadline_closes_the_client_1011() -> None:
    stalling = dataclasses.replace(SHORT_LIVED, faults=Faults(resume_setup_delay_seconds=5.0))
    async with (
        Emulator(stalling) as emulator,
        running_relay(
            relay_settings(emulator, None, resumption_switch_timeout_seconds=0.5)
        ) as relay,
    ):
        ws = await open_raw_session(relay)
        code, reason = await close_of(ws)
        await wait_until_released(relay)
        leases = await relay.state.store.sessions("default")
        deadline = relay.state.metrics.upstream_switch_failures_total.labels("deadline")
    assert (code, reason) == (1011, "upstream switch did not finish within 0.5s")
    assert leases == []
    assert deadline._value.get() == 1


async def test_a_connection_dropped_mid_reply_is_resumed_and_the_question_answered_again() -> None:
    # The first connection replies slowly and loses its TCP connection (no close frame) when
    # the client's third frame arrives, in the middle of the reply.
    dropping = EmulatorConfig(
        reply_chunk_interval_seconds=0.05,
        reply_chunk_chars=4,
        faults=Faults(drop_after_frames=3, fault_connections=1),
    )
    question = json.dumps({"realtimeInput": {"text": "tell me about rivers"}})
    chunk = silence(0.02)
    audio = json.dumps(
        {
            "realtimeInput": {
                "audio": {
                    "mimeType": "audio/pcm;rate=16000",
                    "data": base64.b64encode(chunk).decode(),
                }
            }
        }
    )
    async with (
        Emulator(dropping) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        ws = await open_raw_session(relay, generationConfig={"responseModalities": ["TEXT"]})
        await ws.send(question)
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))  # the reply begins
        await ws.send(audio)  # the upstream connection drops here
        cut = await frames_until_turn_complete(ws)
        again = await frames_until_turn_complete(ws)
        await ws.close()
        metrics = relay.state.metrics
        lost = metrics.upstream_switches_total.labels("lost", "break_before_make")._value.get()
        cut_turns = metrics.upstream_switch_cut_turns_total._value.get()
        consumed = list(emulator.stats.consumed)
    assert "modelTurn" in first["serverContent"]
    assert cut[-2:] == [
        {"serverContent": {"interrupted": True}},
        {"serverContent": {"turnComplete": True}},
    ]
    reply = "".join(
        part["text"]
        for frame in again
        for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
    assert reply == 'Reply 1: you said "tell me about rivers".'
    assert (lost, cut_turns) == (1, 1)
    assert [(record.connection, record.kind) for record in consumed] == [(2, "text"), (2, "audio")]
    assert consumed[1].digest == hashlib.sha256(chunk).hexdigest()


async def door_code_across_switches(
    relay: RunningRelay, tls_files: TLSFiles, emulator: Emulator, sent: SentLog, connections: int
) -> str:
    """Through the SDK: a door code to remember, silence streamed until the emulator has
    accepted `connections` connections (the session switched), then the question: the reply."""
    client = sdk_client(relay, tls_files)
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        await ask(session, "remember this: the door code is 4711", sent)
        async with streaming_silence(session, sent):
            await wait_for_connections(emulator, connections)
        return await ask(session, "what is the door code?", sent)


async def test_a_service_refusing_resumes_while_the_old_connection_is_open_gets_break_before_make(
    tls_files: TLSFiles,
) -> None:
    refusing = dataclasses.replace(SHORT_LIVED, resume_while_open="refuse")
    sent = SentLog()
    async with (
        Emulator(refusing) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        # The first switch costs two connections (one refused), later ones one each.
        recalled = await door_code_across_switches(relay, tls_files, emulator, sent, 5)
        consumed = list(emulator.stats.consumed)
        fallbacks = switches(relay)
        made_first = switches(relay, mode="make_before_break")
    assert 'Before that you said "remember this: the door code is 4711"' in recalled
    assert fallbacks >= 3
    assert made_first == 0
    assert [record.digest for record in consumed] == sent.digests


async def test_an_operator_can_ask_for_break_before_make_and_nothing_is_lost(
    tls_files: TLSFiles,
) -> None:
    """RELAY_RESUMPTION_MAKE_BEFORE_BREAK=false: every switch closes the old connection before
    it opens the new one (for a service that refuses a resume while the old one is open)."""
    sent = SentLog()
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(
            relay_settings(emulator, tls_files, resumption_make_before_break=False)
        ) as relay,
    ):
        recalled = await door_code_across_switches(relay, tls_files, emulator, sent, 3)
        consumed = list(emulator.stats.consumed)
        made_first = switches(relay, mode="make_before_break")
        broke_first = switches(relay, mode="break_before_make")
    assert 'Before that you said "remember this: the door code is 4711"' in recalled
    assert (made_first, broke_first >= 2) == (0, True)
    assert [record.digest for record in consumed] == sent.digests


async def test_input_over_the_replay_buffer_bound_fails_the_next_switch_explicitly() -> None:
    # Input consumed while the model is silent is confirmed at most once a minute here.
    slow_updates = dataclasses.replace(SHORT_LIVED, resumption_update_interval_seconds=60)
    async with (
        Emulator(slow_updates) as emulator,
        running_relay(relay_settings(emulator, None, resumption_buffer_bytes=4096)) as relay,
    ):
        ws = await open_raw_session(relay)
        chunk = base64.b64encode(silence(0.1)).decode()  # ~4.3 KB of base64 per frame
        audio = json.dumps(
            {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": chunk}}}
        )
        await ws.send(audio)  # confirmed at once; the next ones not before the switch
        await asyncio.sleep(0.3)
        await ws.send(audio)
        await ws.send(audio)
        code, reason = await close_of(ws)
    assert code == 1011
    assert reason.startswith("replay buffer over its bound of 4096 bytes")


LONG_KEY = "lr_long_" + "l" * 40
PLAIN_KEY = "lr_plain_" + "p" * 40
BARE_KEY = "lr_bare_" + "r" * 40
PROJECTS = f"""
[projects.long]
api_keys = ["{hash_api_key(LONG_KEY)}"]
default_setup = {{ contextWindowCompression = {{ slidingWindow = {{}} }} }}

[projects.plain]
api_keys = ["{hash_api_key(PLAIN_KEY)}"]
resumption = false

[projects.bare]
api_keys = ["{hash_api_key(BARE_KEY)}"]
"""


async def test_projects_choose_resumption_and_default_setup_fields(tmp_path: Path) -> None:
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(relay_settings(emulator, None, projects_file=projects)) as relay,
    ):
        sent_setups = emulator.stats.setups
        async with connect(relay.url, additional_headers=auth_headers(LONG_KEY)) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            filled_in = sent_setups[-1]
        async with connect(relay.url, additional_headers=auth_headers(LONG_KEY)) as ws:
            own = {"triggerTokens": "9000", "slidingWindow": {"targetTokens": "4000"}}
            await ws.send(
                json.dumps({"setup": {"model": MODEL, "context_window_compression": own}})
            )
            await asyncio.wait_for(ws.recv(), timeout=10)
            kept = sent_setups[-1]
        async with connect(relay.url, additional_headers=auth_headers(PLAIN_KEY)) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            plain = sent_setups[-1]
            goaway = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            code, _ = await close_of(ws)
    assert filled_in["contextWindowCompression"] == {"slidingWindow": {}}
    assert filled_in["sessionResumption"] == {"transparent": True}
    assert kept["contextWindowCompression"] == own
    assert "sessionResumption" not in plain
    assert "contextWindowCompression" not in plain
    assert "goAway" in goaway  # without resumption the upstream's goAway and close reach it
    assert code == 1000


async def mint_single_use_token(relay: RunningRelay) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{relay.http_url}/v1/tokens", json={"uses": 1}, headers=auth_headers()
        )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


async def test_a_single_use_session_token_resumes_its_session_without_spending_a_use() -> None:
    async with (
        Emulator(EmulatorConfig()) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        token = await mint_single_use_token(relay)
        bearer = {"Authorization": f"Bearer {token}"}
        text_only = {"responseModalities": ["TEXT"]}
        async with connect(relay.url, additional_headers=bearer) as ws:
            await ws.send(
                json.dumps(
                    {
                        "setup": {
                            "model": MODEL,
                            "generationConfig": text_only,
                            "sessionResumption": {},
                        }
                    }
                )
            )
            await asyncio.wait_for(ws.recv(), timeout=10)
            await ws.send(text_turn("remember plums"))
            await frames_until_turn_complete(ws)
            handle = await next_resumable_handle(ws)
        with pytest.raises(InvalidStatus) as spent:
            await connect(relay.url, additional_headers=bearer)
        resumed_setup = {
            "model": MODEL,
            "generationConfig": text_only,
            "sessionResumption": {"handle": handle},
        }
        async with connect(f"{relay.url}?resume=1", additional_headers=bearer) as ws:
            await ws.send(json.dumps({"setup": resumed_setup}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            await ws.send(text_turn("what did I say?"))
            reply = await frames_until_turn_complete(ws)
        async with connect(f"{relay.url}?resume=1", additional_headers=bearer) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            code, reason = await close_of(ws)
    assert spent.value.response.status_code == 403
    said = "".join(
        part.get("text", "")
        for frame in reply
        for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
    assert 'Before that you said "remember plums"' in said
    assert (code, reason) == (
        1008,
        "?resume=1 resumes a session: send setup.sessionResumption.handle",
    )


async def test_a_transparent_client_gets_consumed_indexes_in_its_own_numbering() -> None:
    async with (
        Emulator(SHORT_LIVED) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        ws = await open_raw_session(
            relay,
            generationConfig={"responseModalities": ["TEXT"]},
            sessionResumption={"transparent": True},
        )
        sent = 0
        while emulator.stats.connections_accepted < 3:
            await ws.send(text_turn(f"turn {sent}"))
            sent += 1
            await frames_until_turn_complete(ws)
            await asyncio.sleep(0.3)
        await ws.send(text_turn("last"))
        sent += 1
        await frames_until_turn_complete(ws)
        async with asyncio.timeout(10):
            while True:
                update = json.loads(await ws.recv()).get("sessionResumptionUpdate", {})
                if update.get("resumable"):
                    break
        await ws.close()
    assert update["lastConsumedClientMessageIndex"] == str(sent)


@pytest.mark.parametrize("counting", ["per_connection", "per_session"])
async def test_each_index_counting_convention_replays_exactly_the_unconsumed_input(
    counting: Literal["per_connection", "per_session"],
) -> None:
    counted = dataclasses.replace(SHORT_LIVED, consumed_index_counting=counting)
    chunk = silence(0.02)
    audio = json.dumps(
        {
            "realtimeInput": {
                "audio": {
                    "mimeType": "audio/pcm;rate=16000",
                    "data": base64.b64encode(chunk).decode(),
                }
            }
        }
    )
    sent = SentLog()
    async with (
        Emulator(counted) as emulator,
        running_relay(relay_settings(emulator, None, resumption_index_counting=counting)) as relay,
    ):
        ws = await open_raw_session(relay, generationConfig={"responseModalities": ["TEXT"]})
        n = 0
        while emulator.stats.connections_accepted < 4:
            for _ in range(5):
                sent.add("audio", chunk)
                await ws.send(audio)
                await asyncio.sleep(0.02)
            text = f"turn {n}"
            sent.add("text", text.encode())
            await ws.send(json.dumps({"realtimeInput": {"text": text}}))
            await frames_until_turn_complete(ws)
            n += 1
        await ws.close()
        consumed = list(emulator.stats.consumed)
    assert [record.kind for record in consumed] == sent.kinds
    assert [record.digest for record in consumed] == sent.digests


async def stream_silence_until_closed(ws: ClientConnection, seconds: float) -> None:
    """Send 20 ms chunks of silence for `seconds`, or until the relay closes the client."""
    chunk = base64.b64encode(silence(0.02)).decode()
    audio = json.dumps(
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": chunk}}}
    )
    async with asyncio.timeout(seconds + 10):
        with contextlib.suppress(ConnectionClosed):
            for _ in range(round(seconds / 0.02)):
                await ws.send(audio)
                await asyncio.sleep(0.02)


async def test_a_duration_cap_ends_the_session_explicitly_unless_the_project_compresses(
    tmp_path: Path,
) -> None:
    # The service caps audio sessions without context compression (15 minutes; 2 s here),
    # across resumptions: every resumed connection gets a goAway, then 1011, at once.
    capped = EmulatorConfig(audio_session_cap_seconds=2.0)
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    async with (
        Emulator(capped) as emulator,
        running_relay(relay_settings(emulator, None, projects_file=projects)) as relay,
    ):
        async with connect(relay.url, additional_headers=auth_headers(PLAIN_KEY)) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            await stream_silence_until_closed(ws, 6)
            without_resumption = (ws.close_code, ws.close_reason)
        before = emulator.stats.connections_accepted
        async with connect(relay.url, additional_headers=auth_headers(BARE_KEY)) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            await stream_silence_until_closed(ws, 6)
            resumed_in_vain = (ws.close_code, ws.close_reason)
        attempts = emulator.stats.connections_accepted - before
        async with connect(relay.url, additional_headers=auth_headers(LONG_KEY)) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            await stream_silence_until_closed(ws, 6)
            compressed_open = ws.close_code is None
    assert without_resumption == (1011, "Deadline expired before operation could complete.")
    # Resuming cannot lift the cap: a few quick attempts, then an explicit end, not a loop.
    assert resumed_in_vain == (
        1011,
        "upstream connections keep ending (3 switches without a reply)",
    )
    assert attempts <= 5
    assert compressed_open  # contextWindowCompression by default: no cap, 6 s and counting


@pytest.mark.parametrize("goaway_wait", [5.0, 0.05])
async def test_after_a_goaway_mid_reply_the_switch_waits_for_the_turn_end_or_cuts_it(
    goaway_wait: float,
) -> None:
    # The goAway comes 0.1 s into the connection, while a reply of about a second streams.
    config = EmulatorConfig(
        connection_lifetime_seconds=4.0,
        goaway_notice_seconds=3.9,
        reply_chunk_interval_seconds=0.05,
        reply_chunk_chars=2,
    )
    async with (
        Emulator(config) as emulator,
        running_relay(
            relay_settings(emulator, None, resumption_goaway_wait_seconds=goaway_wait)
        ) as relay,
    ):
        ws = await open_raw_session(relay, generationConfig={"responseModalities": ["TEXT"]})
        await ws.send(json.dumps({"realtimeInput": {"text": "tell me about the sea"}}))
        turn = await frames_until_turn_complete(ws)
        await ws.close()
        metrics = relay.state.metrics
        cut_turns = metrics.upstream_switch_cut_turns_total._value.get()
        by_goaway = switches(relay, "goaway")

    def said(frames: list[dict[str, Any]]) -> str:
        return "".join(
            part.get("text", "")
            for frame in frames
            for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
        )

    # Every connection gives its goAway 0.1 s in: the first is the one that matters here.
    assert by_goaway >= 1
    full = 'Reply 1: you said "tell me about the sea".'
    if goaway_wait > 1:  # the turn ended before the wait did: nothing lost
        assert (said(turn), cut_turns) == (full, 0)
    else:  # cut (the answer comes again after the replay: see the drop test)
        assert turn[-2:] == [
            {"serverContent": {"interrupted": True}},
            {"serverContent": {"turnComplete": True}},
        ]
        assert full.startswith(said(turn))
        assert said(turn) != full
        assert cut_turns >= 1
