"""Resumption as Vertex does it, frame by frame: handles, transparent mode, consumed messages."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig, Faults
from app.emulator.consumption import message_digest
from app.emulator.resumption import consumed_index
from tests.emulator.support import (
    TEXT,
    closed_with,
    raw_connection,
    raw_reply_text,
    raw_setup,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
)
from tests.support.audio import pcm_chunks, silence, speech
from tests.support.sdk import TURN_TIMEOUT

TRANSPARENT = {**TEXT, "sessionResumption": {"transparent": True}}
# Updates as soon as anything was consumed, so that tests see them promptly.
PROMPT_UPDATES = EmulatorConfig(resumption_update_interval_seconds=0)


def audio_frame(pcm: bytes) -> str:
    data = base64.b64encode(pcm).decode()
    return json.dumps(
        {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": data}}}
    )


def resuming(handle: str, fields: dict[str, Any] = TRANSPARENT) -> str:
    resumption = {**fields.get("sessionResumption", {}), "handle": handle}
    return raw_setup(**{**fields, "sessionResumption": resumption})


async def next_update(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = await recv_json(ws)
        if "sessionResumptionUpdate" in message:
            update: dict[str, Any] = message["sessionResumptionUpdate"]
            return update


async def update_covering(ws: ClientConnection, index: int) -> dict[str, Any]:
    """The first resumable update whose last consumed index reaches `index`."""
    while True:
        update = await next_update(ws)
        if update["resumable"] and (consumed_index(update) or 0) >= index:
            return update


def test_the_consumed_index_is_read_from_a_string_or_a_number() -> None:
    assert consumed_index({"lastConsumedClientMessageIndex": "12"}) == 12
    assert consumed_index({"lastConsumedClientMessageIndex": 12}) == 12
    assert consumed_index({"last_consumed_client_message_index": "3"}) == 3
    assert consumed_index({"newHandle": "h", "resumable": True}) is None


async def test_transparent_updates_report_the_last_consumed_index_as_a_string_setup_being_0() -> (
    None
):
    frames = [audio_frame(chunk) for chunk in pcm_chunks(silence(0.06))]
    async with Emulator(PROMPT_UPDATES) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TRANSPARENT))
        session_id = await recv_setup_complete(ws)
        first = await next_update(ws)
        for frame in frames:
            await ws.send(frame)
        last = await update_covering(ws, len(frames))

    assert first["resumable"] is True
    assert first["newHandle"]
    assert first["lastConsumedClientMessageIndex"] == "0"
    assert last["lastConsumedClientMessageIndex"] == str(len(frames))
    assert last["newHandle"] != first["newHandle"]
    assert [(c.session, c.connection, c.index, c.kind) for c in emulator.stats.consumed] == [
        (session_id, 1, index, "audio") for index in range(1, len(frames) + 1)
    ]
    assert [c.digest for c in emulator.stats.consumed] == [
        message_digest(json.loads(frame)) for frame in frames
    ]


async def test_without_transparent_mode_updates_carry_no_consumed_index() -> None:
    async with Emulator(PROMPT_UPDATES) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT, sessionResumption={}))
        await recv_setup_complete(ws)
        update = await next_update(ws)

    assert set(update) == {"newHandle", "resumable"}


async def test_no_handle_is_resumable_while_the_model_generates_or_waits_for_a_tool() -> None:
    tools = [{"functionDeclarations": [{"name": "get_weather"}]}]
    async with Emulator(PROMPT_UPDATES) as emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TRANSPARENT, tools=tools))
        await recv_setup_complete(ws)
        await next_update(ws)
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        before_call = []
        while "toolCall" not in (message := await recv_json(ws)):
            before_call.append(message)
        [call] = message["toolCall"]["functionCalls"]
        await asyncio.sleep(0.2)  # a resumable update now would be a bug
        await ws.send(
            json.dumps(
                {
                    "toolResponse": {
                        "functionResponses": [
                            {"id": call["id"], "name": "get_weather", "response": {"t": 1}}
                        ]
                    }
                }
            )
        )
        after_call = await recv_raw_turn(ws)
        final = await next_update(ws)

    updates = [
        m["sessionResumptionUpdate"]
        for m in before_call + after_call
        if len(m) == 1 and "sessionResumptionUpdate" in m
    ]
    assert updates == [{"newHandle": "", "resumable": False}]
    assert final["resumable"] is True
    assert final["lastConsumedClientMessageIndex"] == "2"  # the text, then the tool response


async def test_resuming_a_handle_restores_the_state_it_names_and_forgets_what_came_after() -> None:
    # Idle updates only once a minute: the only handle is the one at setup (index 0).
    config = EmulatorConfig(resumption_update_interval_seconds=60)
    frames = [audio_frame(chunk) for chunk in pcm_chunks(silence(0.06))]
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TRANSPARENT))
            session_id = await recv_setup_complete(ws)
            handle = (await next_update(ws))["newHandle"]
            for frame in frames:
                await ws.send(frame)
            async with asyncio.timeout(TURN_TIMEOUT):
                # Stats are plain counters, with nothing to wait on.
                while len(emulator.stats.consumed) < len(frames):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        async with raw_connection(emulator) as ws:
            await ws.send(resuming(handle))
            resumed_id = await recv_setup_complete(ws)
            update = await next_update(ws)

    assert resumed_id == session_id
    # The handle named the state before any audio: what the first connection consumed after
    # it is no longer part of the conversation.
    assert emulator.stats.consumed == []
    assert update["lastConsumedClientMessageIndex"] == "0"


async def converse_transparently(
    emulator: Emulator, frames: list[str], fields: dict[str, Any] = TRANSPARENT
) -> tuple[list[str], list[dict[str, Any]]]:
    """Send `frames` as a transparent-resumption client does: keep every frame until an
    update says it was consumed, and after a lost connection resume with the latest handle
    and send again what was not consumed. Returns the session ids seen and every server
    message, once a turn has completed after the last frame went out."""
    backlog = list(frames)  # not yet reported consumed, oldest first
    handle: str | None = None
    handle_index = 0  # the last consumed index the handle's update reported
    per_session = emulator.config.consumed_index_counting == "per_session"
    session_ids: list[str] = []
    received: list[dict[str, Any]] = []
    turn_completed = asyncio.Event()
    while True:
        setup = raw_setup(**fields) if handle is None else resuming(handle, fields)
        sent = 0  # backlog[:sent] went out on this connection
        # The index of the message before backlog[0].
        consumed = handle_index if per_session else 0
        try:
            async with raw_connection(emulator) as ws:
                await ws.send(setup)
                session_ids.append(await recv_setup_complete(ws))

                async def receive() -> None:
                    nonlocal handle, handle_index, sent, consumed
                    async for frame in ws:
                        message = json.loads(frame)
                        received.append(message)
                        update = message.get("sessionResumptionUpdate")
                        if update and update["resumable"]:
                            handle = update["newHandle"]
                            index = consumed_index(update)
                            assert index is not None
                            del backlog[: index - consumed]
                            sent -= index - consumed
                            consumed = handle_index = index
                        if message.get("serverContent", {}).get("turnComplete"):
                            turn_completed.set()

                async with asyncio.TaskGroup() as tasks:
                    receiver = tasks.create_task(receive())
                    while sent < len(backlog):
                        await ws.send(backlog[sent])
                        sent += 1
                        await asyncio.sleep(0.005)  # paced like a live microphone, loosely
                    async with asyncio.timeout(TURN_TIMEOUT):
                        await turn_completed.wait()
                    receiver.cancel()
            return session_ids, received
        except* ConnectionClosed:
            assert handle is not None, "a connection was lost before any handle arrived"


async def test_a_transparent_client_loses_and_duplicates_nothing_across_a_dropped_connection() -> (
    None
):
    utterance = [audio_frame(chunk) for chunk in pcm_chunks(speech(0.6) + silence(0.8), 0.05)]
    # The first connection is dropped (no close frame) when its 12th frame arrives.
    dropping = EmulatorConfig(
        resumption_update_interval_seconds=0,
        faults=Faults(drop_after_frames=12, fault_connections=1),
    )
    async with Emulator(dropping) as emulator:
        session_ids, received = await converse_transparently(emulator, utterance)
    async with Emulator(PROMPT_UPDATES) as undisturbed:
        _, control = await converse_transparently(undisturbed, utterance)

    assert emulator.stats.connections_accepted == 2
    assert len(set(session_ids)) == 1
    consumed = emulator.stats.consumed
    assert [c.digest for c in consumed] == [message_digest(json.loads(f)) for f in utterance]
    assert {c.connection for c in consumed} == {1, 2}
    assert all(c.session == session_ids[0] for c in consumed)
    # The voice activity detector resumed mid-utterance: the model heard the same speech.
    assert raw_reply_text(received) == raw_reply_text(control)
    assert 'you said "[0.60 s of speech]"' in raw_reply_text(received)


async def test_per_session_counting_numbers_on_across_resumptions() -> None:
    config = EmulatorConfig(
        resumption_update_interval_seconds=0,
        consumed_index_counting="per_session",
        faults=Faults(drop_after_frames=5, fault_connections=1),
    )
    utterance = [audio_frame(chunk) for chunk in pcm_chunks(speech(0.3) + silence(0.8), 0.1)]
    async with Emulator(config) as emulator:
        await converse_transparently(emulator, utterance)

    consumed = emulator.stats.consumed
    assert [c.index for c in consumed] == list(range(1, len(utterance) + 1))
    assert {c.connection for c in consumed} == {1, 2}


@pytest.mark.parametrize("policy", ["allow", "refuse"])
async def test_resuming_while_the_handles_connection_is_open_follows_the_policy(
    policy: str,
) -> None:
    config = EmulatorConfig(resume_while_open=policy)  # type: ignore[arg-type]
    async with Emulator(config) as emulator, raw_connection(emulator) as first:
        await first.send(raw_setup(**TRANSPARENT))
        await recv_setup_complete(first)
        handle = (await next_update(first))["newHandle"]
        async with raw_connection(emulator) as second:
            await second.send(resuming(handle))
            if policy == "refuse":
                assert await closed_with(second) == (1011, "Internal error encountered.")
            else:
                await recv_setup_complete(second)
        # Once the first connection has closed, the same handle resumes under either policy.
        await first.close()
        async with raw_connection(emulator) as third:
            await third.send(resuming(handle))
            await recv_setup_complete(third)


async def test_faults_can_be_limited_to_the_first_connections() -> None:
    config = EmulatorConfig(faults=Faults(close_after_frames=1, fault_connections=1))
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT))
            assert await closed_with(ws) == (1011, "Internal error encountered.")
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT))
            await recv_setup_complete(ws)


async def test_the_resume_setup_delay_stalls_only_connections_that_resume() -> None:
    config = EmulatorConfig(faults=Faults(resume_setup_delay_seconds=60))
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TRANSPARENT))
            await recv_setup_complete(ws)  # a fresh session is not held back
            handle = (await next_update(ws))["newHandle"]
        async with raw_connection(emulator) as ws:
            await ws.send(resuming(handle))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1):
                    await ws.recv()
