"""Function calling as Vertex does it: blocking or not per model and declaration, ids or not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from tests.emulator.support import (
    MODEL,
    raw_connection,
    raw_reply_text,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
)
from tests.support.sdk import TURN_TIMEOUT

TEXT: dict[str, Any] = {"generationConfig": {"responseModalities": ["TEXT"]}}
NATIVE_AUDIO = "gemini-live-2.5-flash-native-audio"
WEATHER = [{"functionDeclarations": [{"name": "get_weather"}]}]
# The text model behaving as the native-audio ones do by default.
NON_BLOCKING = EmulatorConfig(non_blocking_function_models=(MODEL,))


def answer(call: dict[str, Any], **extra: Any) -> str:
    response = {"name": call["name"], "response": {"temp_c": 21}, **extra}
    if "id" in call:
        response["id"] = call["id"]
    return json.dumps({"toolResponse": {"functionResponses": [response]}})


def flags(turn: list[dict[str, Any]]) -> list[str]:
    return [
        key
        for message in turn
        for key in ("toolCall", "generationComplete", "interrupted", "turnComplete")
        if key in message or key in message.get("serverContent", {})
    ]


async def open_session(ws: ClientConnection, *, model: str = MODEL, **setup: Any) -> None:
    model_path = f"projects/p/locations/us-central1/publishers/google/models/{model}"
    await ws.send(json.dumps({"setup": {"model": model_path, "tools": WEATHER, **setup}}))
    await recv_setup_complete(ws)


def call_in(turn: list[dict[str, Any]]) -> dict[str, Any]:
    [message] = [m for m in turn if "toolCall" in m]
    [call] = message["toolCall"]["functionCalls"]
    result: dict[str, Any] = call
    return result


async def test_a_non_blocking_call_ends_its_turn_and_its_response_makes_the_next() -> None:
    async with Emulator(NON_BLOCKING) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, **TEXT)
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call_turn = await recv_raw_turn(ws)
        # The conversation goes on while the function runs.
        await ws.send(json.dumps({"realtimeInput": {"text": "meanwhile, hello"}}))
        meanwhile = await recv_raw_turn(ws)
        await ws.send(answer(call_in(call_turn)))
        result_turn = await recv_raw_turn(ws)

    assert flags(call_turn) == ["toolCall", "generationComplete", "turnComplete"]
    assert raw_reply_text(call_turn) == ""
    assert raw_reply_text(meanwhile).startswith('Reply 2: you said "meanwhile, hello".')
    assert raw_reply_text(result_turn) == 'Reply 3: get_weather returned "{"temp_c":21}".'


async def test_the_native_audio_models_call_without_blocking_by_default() -> None:
    async with Emulator() as emulator, raw_connection(emulator) as ws:
        await open_session(ws, model=NATIVE_AUDIO, outputAudioTranscription={})
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call_turn = await recv_raw_turn(ws)

    assert flags(call_turn) == ["toolCall", "generationComplete", "turnComplete"]


async def test_a_declared_behavior_overrides_the_models_default() -> None:
    blocking = [{"functionDeclarations": [{"name": "get_weather", "behavior": "BLOCKING"}]}]
    async with Emulator() as emulator, raw_connection(emulator) as ws:
        await open_session(ws, model=NATIVE_AUDIO, tools=blocking, outputAudioTranscription={})
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        while "toolCall" not in (message := await recv_json(ws)):
            pass
        await ws.send(answer(call_in([message])))
        rest = await recv_raw_turn(ws)

    # The call held the turn: its answer is spoken in the same turn.
    assert flags(rest) == ["generationComplete", "turnComplete"]


async def test_an_interrupt_scheduled_response_cuts_the_current_reply_short() -> None:
    slow = EmulatorConfig(non_blocking_function_models=(MODEL,), reply_chunk_interval_seconds=0.2)
    async with Emulator(slow) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, **TEXT)
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call = call_in(await recv_raw_turn(ws))
        await ws.send(json.dumps({"realtimeInput": {"text": "tell me a long story"}}))
        while "modelTurn" not in (await recv_json(ws)).get("serverContent", {}):
            pass  # the story has begun
        await ws.send(answer(call, scheduling="INTERRUPT"))
        story = await recv_raw_turn(ws)
        result_turn = await recv_raw_turn(ws)

    assert "interrupted" in flags(story)
    assert "get_weather returned" in raw_reply_text(result_turn)


async def test_a_silent_response_is_taken_in_without_a_word() -> None:
    async with Emulator(NON_BLOCKING) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, **TEXT)
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call = call_in(await recv_raw_turn(ws))
        await ws.send(answer(call, scheduling="SILENT"))
        await ws.send(json.dumps({"realtimeInput": {"text": "hello"}}))
        next_turn = await recv_raw_turn(ws)

    # The very next turn answers the user: the silent result made none.
    assert raw_reply_text(next_turn).startswith('Reply 2: you said "hello".')


async def test_no_handle_is_resumable_while_a_non_blocking_call_is_pending() -> None:
    async with Emulator(NON_BLOCKING) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, **TEXT, sessionResumption={})
        await recv_json(ws)  # the handle at setup
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call_turn = await recv_raw_turn(ws)
        await ws.send(json.dumps({"realtimeInput": {"text": "hello"}}))
        meanwhile = await recv_raw_turn(ws)
        await ws.send(answer(call_in(call_turn)))
        await recv_raw_turn(ws)
        after = await recv_json(ws)

    updates = [
        m["sessionResumptionUpdate"]
        for m in call_turn + meanwhile
        if "sessionResumptionUpdate" in m
    ]
    assert all(not update["resumable"] for update in updates)
    assert after["sessionResumptionUpdate"]["resumable"] is True


async def test_a_model_without_call_ids_matches_answers_by_name_and_refuses_ids() -> None:
    config = EmulatorConfig(models_without_call_ids=(MODEL,))
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await open_session(ws, **TEXT)
            await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
            while "toolCall" not in (message := await recv_json(ws)):
                pass
            call = call_in([message])
            await ws.send(answer(call))
            turn = await recv_raw_turn(ws)
        async with raw_connection(emulator) as ws:
            await open_session(ws, **TEXT)
            await ws.send(answer({"name": "get_weather", "id": "call-1"}))
            try:
                async with asyncio.timeout(TURN_TIMEOUT):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                pass

    assert call == {"name": "get_weather", "args": {}}
    assert raw_reply_text(turn) == 'Reply 1: get_weather returned "{"temp_c":21}".'
    assert ws.close_code == 1007
    assert ws.close_reason is not None
    assert ws.close_reason.startswith('Invalid JSON payload received. Unknown name "id" at')
