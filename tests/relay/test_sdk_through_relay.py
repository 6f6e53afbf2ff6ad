"""The official google-genai SDK, in its API-gateway mode, holds conversations through the relay."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import errors, live, types
from websockets.exceptions import InvalidStatus

from app.emulator import Emulator, EmulatorConfig, Faults
from tests.relay.conftest import MODEL, relay_settings, sdk_client
from tests.support.audio import silence, speech
from tests.support.relay import RunningRelay, running_relay
from tests.support.sdk import receive_turn, send_audio, texts
from tests.support.tls import TLSFiles

TEXT = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])


async def send_speech(session: live.AsyncSession, speech_seconds: float = 0.8) -> None:
    await send_audio(session, speech(speech_seconds) + silence(1.0))


async def test_a_text_turn(relay: RunningRelay, tls_files: TLSFiles) -> None:
    client = sdk_client(relay, tls_files)
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello relay")]),
            turn_complete=True,
        )
        messages = await receive_turn(session)
    assert 'you said "hello relay"' in texts(messages)
    assert messages[-1].server_content is not None
    assert messages[-1].server_content.turn_complete


async def test_an_audio_turn_with_transcriptions(relay: RunningRelay, tls_files: TLSFiles) -> None:
    client = sdk_client(relay, tls_files)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
    )
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await send_speech(session)
        messages = await receive_turn(session)
    audio = b"".join(m.data or b"" for m in messages)
    heard = "".join(
        m.server_content.input_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.input_transcription
    )
    spoken = "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    assert len(audio) > 24_000  # more than half a second of 24 kHz 16-bit speech
    assert "s of speech" in heard
    assert "Reply 1" in spoken


async def test_a_tool_call_round_trip(relay: RunningRelay, tls_files: TLSFiles) -> None:
    weather = types.FunctionDeclaration(
        name="get_weather",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
        ),
    )
    config = TEXT.model_copy(update={"tools": [types.Tool(function_declarations=[weather])]})
    client = sdk_client(relay, tls_files)
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(
                role="user", parts=[types.Part(text='get_weather {"city": "Paris"}')]
            ),
            turn_complete=True,
        )
        call = None
        async with asyncio.timeout(10):
            async for message in session.receive():
                if message.tool_call:
                    call = message.tool_call.function_calls[0]  # type: ignore[index]
                    break
        assert call is not None
        assert call.name == "get_weather"
        assert call.args == {"city": "Paris"}
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"temp_c": 21})
            ]
        )
        messages = await receive_turn(session)
    assert "get_weather returned" in texts(messages)
    assert "21" in texts(messages)


async def test_speech_interrupts_a_reply(tls_files: TLSFiles) -> None:
    slow = EmulatorConfig(reply_chunk_interval_seconds=0.05, reply_chunk_chars=4)
    async with (
        Emulator(slow) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        client = sdk_client(relay, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="tell me a long story")]),
                turn_complete=True,
            )
            receiving = asyncio.create_task(receive_turn(session))
            await asyncio.sleep(0.2)
            await send_speech(session, 0.5)
            messages = await receiving
    contents = [m.server_content for m in messages if m.server_content]
    assert any(c.interrupted for c in contents)
    assert not any(c.generation_complete for c in contents)
    assert contents[-1].turn_complete


async def test_resumption_with_a_handle_across_two_connections(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    client = sdk_client(relay, tls_files)
    handle = None
    config = TEXT.model_copy(update={"session_resumption": types.SessionResumptionConfig()})
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="remember apples")]),
            turn_complete=True,
        )
        await receive_turn(session)
        async with asyncio.timeout(5):
            async for message in session.receive():
                update = message.session_resumption_update
                if update and update.resumable and update.new_handle:
                    handle = update.new_handle
                    break
    assert handle
    resumed = TEXT.model_copy(
        update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
    )
    async with client.aio.live.connect(model=MODEL, config=resumed) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="what did I say?")]),
            turn_complete=True,
        )
        messages = await receive_turn(session)
    assert 'Before that you said "remember apples"' in texts(messages)


async def test_an_upstream_close_arrives_as_api_error_with_its_code_and_reason(
    tls_files: TLSFiles,
) -> None:
    faults = Faults(
        close_after_frames=2, close_code=1011, close_reason="Internal error encountered."
    )
    async with (
        Emulator(EmulatorConfig(faults=faults)) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        client = sdk_client(relay, tls_files)
        with pytest.raises(errors.APIError) as raised:
            async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text="hi")]),
                    turn_complete=True,
                )
                await receive_turn(session)
    assert raised.value.code == 1011
    assert "Internal error encountered." in str(raised.value)


async def test_a_wrong_key_is_refused_before_any_upstream_connection(
    relay: RunningRelay, emulator: Emulator, tls_files: TLSFiles
) -> None:
    client = sdk_client(relay, tls_files, api_key="lr_wrong")
    with pytest.raises(InvalidStatus) as raised:
        async with client.aio.live.connect(model=MODEL, config=TEXT):
            pass
    assert raised.value.response.status_code == 401
    assert emulator.stats.connections_accepted == 0
