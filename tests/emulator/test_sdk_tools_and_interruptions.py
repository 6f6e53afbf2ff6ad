"""Tool calls and interruptions through the google-genai SDK."""

from __future__ import annotations

import pytest
from google.genai import errors, types

from app.emulator import EmulatorConfig
from tests.emulator.support import MODEL, sdk_client, tls_emulator
from tests.support.audio import silence, speech
from tests.support.sdk import receive_turn, receive_until, send_audio, server_flags, texts
from tests.support.tls import TLSFiles

WEATHER_TOOL: types.ToolDict = {
    "function_declarations": [
        {
            "name": "get_weather",
            "parameters": {
                "type": types.Type.OBJECT,
                "properties": {"city_name": {"type": types.Type.STRING}},
            },
        }
    ]
}
TEXT_WITH_TOOLS: types.LiveConnectConfigDict = {
    "response_modalities": [types.Modality.TEXT],
    "tools": [WEATHER_TOOL],
}
# Slow, long replies (5 chunks, 0.2 s apart), so that the user can speak while one streams.
SLOW = EmulatorConfig(reply_chunk_interval_seconds=0.2)
LONG_STORY = "tell me a long story about the sea and the stars"


async def test_a_turn_naming_a_function_calls_it_and_the_reply_uses_its_response(
    tls_files: TLSFiles,
) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_WITH_TOOLS) as session:
            await session.send_realtime_input(text='get_weather {"city_name": "Paris"} please')
            _, message = await receive_until(session, "tool_call")
            assert message.tool_call is not None
            [call] = message.tool_call.function_calls or []
            assert (call.name, call.args) == ("get_weather", {"city_name": "Paris"})
            assert call.id
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=call.id, name=call.name, response={"temp_c": 21})
                ]
            )
            messages = await receive_turn(session)

    assert texts(messages) == 'Reply 1: get_weather returned "{"temp_c":21}".'
    assert server_flags(messages) == ["generation_complete", "turn_complete"]


async def test_every_tool_call_gets_a_new_id(tls_files: TLSFiles) -> None:
    ids = []
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_WITH_TOOLS) as session:
            for _ in range(2):
                await session.send_realtime_input(text="get_weather")
                _, message = await receive_until(session, "tool_call")
                assert message.tool_call is not None
                [call] = message.tool_call.function_calls or []
                ids.append(call.id)
                await session.send_tool_response(
                    function_responses=[types.FunctionResponse(id=call.id, response={})]
                )
                await receive_turn(session)

    assert len(set(ids)) == 2


async def test_interrupting_a_pending_tool_call_cancels_it(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_WITH_TOOLS) as session:
            await session.send_realtime_input(text="get_weather")
            _, message = await receive_until(session, "tool_call")
            assert message.tool_call is not None
            [call] = message.tool_call.function_calls or []
            await session.send_realtime_input(text="never mind")
            messages = await receive_turn(session)
            next_turn = await receive_turn(session)

    cancellations = [m.tool_call_cancellation for m in messages if m.tool_call_cancellation]
    assert [c.ids for c in cancellations] == [[call.id]]
    assert server_flags(messages) == ["interrupted", "turn_complete"]
    assert texts(next_turn).startswith('Reply 2: you said "never mind".')


async def test_realtime_input_during_a_tool_call_can_end_the_session_as_reported(
    tls_files: TLSFiles,
) -> None:
    config = EmulatorConfig(close_on_input_during_tool_call=True)
    async with tls_emulator(tls_files, config) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_WITH_TOOLS) as session:
            await session.send_realtime_input(text="get_weather")
            await receive_until(session, "tool_call")
            await send_audio(session, silence(0.02))
            with pytest.raises(errors.APIError) as caught:
                await receive_turn(session)

    assert caught.value.code == 1008
    assert "not implemented" in str(caught.value)


async def test_a_new_text_turn_interrupts_the_streaming_reply(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files, SLOW) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(
            model=MODEL, config={"response_modalities": [types.Modality.TEXT]}
        ) as session:
            await session.send_realtime_input(text=LONG_STORY)
            before, first_chunk = await receive_until(session, "text")
            await session.send_realtime_input(text="stop")
            rest = await receive_turn(session)
            next_turn = await receive_turn(session)

    interrupted_turn = [*before, first_chunk, *rest]
    assert server_flags(interrupted_turn) == ["interrupted", "turn_complete"]
    assert len(texts(interrupted_turn)) < len(f'Reply 1: you said "{LONG_STORY}".')
    assert texts(next_turn).startswith('Reply 2: you said "stop".')
    assert server_flags(next_turn) == ["generation_complete", "turn_complete"]


async def test_speech_that_starts_during_a_reply_interrupts_it(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files, SLOW) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(
            model=MODEL, config={"response_modalities": [types.Modality.TEXT]}
        ) as session:
            await session.send_realtime_input(text=LONG_STORY)
            await receive_until(session, "text")
            await send_audio(session, speech(0.3) + silence(0.6))
            rest = await receive_turn(session)
            next_turn = await receive_turn(session)

    assert server_flags(rest) == ["interrupted", "turn_complete"]
    usage = rest[-1].usage_metadata
    assert usage is not None
    assert usage.response_token_count, "what was sent before the interruption is counted"
    assert texts(next_turn).startswith('Reply 2: you said "[0.30 s of speech]".')


async def test_with_no_interruption_the_reply_finishes_and_the_speech_is_answered_next(
    tls_files: TLSFiles,
) -> None:
    config: types.LiveConnectConfigDict = {
        "response_modalities": [types.Modality.TEXT],
        "realtime_input_config": {"activity_handling": types.ActivityHandling.NO_INTERRUPTION},
    }
    async with tls_emulator(tls_files, SLOW) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await session.send_realtime_input(text=LONG_STORY)
            before, first_chunk = await receive_until(session, "text")
            await send_audio(session, speech(0.3) + silence(0.6))
            rest = await receive_turn(session)
            next_turn = await receive_turn(session)

    first_turn = [*before, first_chunk, *rest]
    assert texts(first_turn) == f'Reply 1: you said "{LONG_STORY}".'
    assert server_flags(first_turn) == ["generation_complete", "turn_complete"]
    assert texts(next_turn).startswith('Reply 2: you said "[0.30 s of speech]".')


async def test_with_detection_disabled_activity_start_and_end_delimit_the_turn(
    tls_files: TLSFiles,
) -> None:
    config: types.LiveConnectConfigDict = {
        "response_modalities": [types.Modality.TEXT],
        "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
    }
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            # Silence as well as speech belongs to the turn: the client decides, not the VAD.
            await session.send_realtime_input(activity_start=types.ActivityStart())
            await send_audio(session, silence(0.5) + speech(0.2))
            await session.send_realtime_input(activity_end=types.ActivityEnd())
            messages = await receive_turn(session)

    assert texts(messages) == 'Reply 1: you said "[0.70 s of speech]".'
