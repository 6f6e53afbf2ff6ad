"""Strict messages: what Vertex refuses is refused, in its words; what the SDK sends passes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import errors, types

from app.emulator import Emulator, EmulatorConfig
from app.protocol.errors import close_reason
from tests.emulator.support import (
    MODEL,
    TEXT,
    VERTEX_MODEL,
    closed_with,
    raw_connection,
    raw_reply_text,
    raw_setup,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
    sdk_client,
    tls_emulator,
)
from tests.support.sdk import receive_turn, receive_until, texts
from tests.support.tls import TLSFiles

NATIVE_AUDIO = "gemini-live-2.5-flash-native-audio"


def unknown(name: str, path: str) -> str:
    """The service's words for an unknown field, cut to what a close frame carries."""
    return close_reason(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."
    )


async def refusal_of_setup(
    emulator: Emulator, setup: dict[str, Any]
) -> tuple[int | None, str | None]:
    async with raw_connection(emulator) as ws:
        await ws.send(json.dumps({"setup": {"model": VERTEX_MODEL, **setup}}))
        return await closed_with(ws)


async def refusal_mid_session(
    emulator: Emulator, message: dict[str, Any]
) -> tuple[int | None, str | None]:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_setup_complete(ws)
        await ws.send(json.dumps(message))
        return await closed_with(ws)


@pytest.mark.parametrize(
    ("setup", "name", "path"),
    [
        (
            {"generationConfig": {"responseModalities": ["TEXT"], "bogus": 1}},
            "bogus",
            "setup.generation_config",
        ),
        # snake_case in, the name as sent and a snake_case path out
        (
            {"generation_config": {"speech_config": {"voice_name": "Puck"}}},
            "voice_name",
            "setup.generation_config.speech_config",
        ),
        (
            {"realtimeInputConfig": {"automaticActivityDetection": {"silenceMs": 5}}},
            "silenceMs",
            "setup.realtime_input_config.automatic_activity_detection",
        ),
        (
            {"tools": [{"functionDeclarations": [{"name": "f", "scheduling": "SILENT"}]}]},
            "scheduling",
            "setup.tools[0].function_declarations[0]",
        ),
        (
            {"labels": {}, "systemInstruction": {"parts": [{"txt": "hi"}]}},
            "txt",
            "setup.system_instruction.parts[0]",
        ),
    ],
)
async def test_unknown_or_misplaced_setup_fields_close_1007_naming_them(
    emulator: Emulator, setup: dict[str, Any], name: str, path: str
) -> None:
    assert await refusal_of_setup(emulator, setup) == (1007, unknown(name, path))


async def test_a_value_of_the_wrong_type_closes_1007_naming_its_path(emulator: Emulator) -> None:
    code, reason = await refusal_of_setup(
        emulator, {"generationConfig": {"responseModalities": ["SMELL"]}}
    )
    assert code == 1007
    assert reason is not None
    assert reason.startswith(
        "Invalid value at 'setup.generation_config.response_modalities[0]' (type.googleapis.com/"
    )


@pytest.mark.parametrize(
    ("message", "name", "path"),
    [
        (
            {"realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "", "rate": 1}}},
            "rate",
            "realtime_input.audio",
        ),
        ({"clientContent": {"turns": [], "endOfTurn": True}}, "endOfTurn", "client_content"),
        # willContinue exists in the Gemini API only (the SDK's Vertex converter refuses it)
        (
            {"toolResponse": {"functionResponses": [{"name": "f", "willContinue": True}]}},
            "willContinue",
            "tool_response.function_responses[0]",
        ),
    ],
)
async def test_unknown_fields_in_later_messages_close_1007_naming_them(
    emulator: Emulator, message: dict[str, Any], name: str, path: str
) -> None:
    assert await refusal_mid_session(emulator, message) == (1007, unknown(name, path))


async def test_an_unknown_message_type_is_named_without_a_path(emulator: Emulator) -> None:
    assert await refusal_mid_session(emulator, {"bidiInput": {}}) == (
        1007,
        'Invalid JSON payload received. Unknown name "bidiInput": Cannot find field.',
    )


async def test_scheduling_can_be_refused_as_vertex_once_did() -> None:
    config = EmulatorConfig(function_response_scheduling="refuse")
    response = {
        "functionResponses": [{"id": "x", "name": "f", "response": {}, "scheduling": "SILENT"}]
    }
    async with Emulator(config) as emulator:
        refusal = await refusal_mid_session(emulator, {"toolResponse": response})
    # The very text reported of Vertex.
    assert refusal == (1007, unknown("scheduling", "tool_response.function_responses[0]"))


async def test_a_native_audio_model_asked_for_text_closes_1007(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        with pytest.raises(errors.APIError) as caught:
            async with client.aio.live.connect(
                model=NATIVE_AUDIO, config={"response_modalities": [types.Modality.TEXT]}
            ):
                pass
        # The same model speaking is fine.
        async with client.aio.live.connect(model=NATIVE_AUDIO) as session:
            assert session.setup_complete is not None

    assert caught.value.code == 1007
    assert "Request contains an invalid argument." in str(caught.value)


async def test_an_unknown_voice_closes_1007(tls_files: TLSFiles) -> None:
    config: types.LiveConnectConfigDict = {
        "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Bogus"}}}
    }
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        with pytest.raises(errors.APIError) as caught:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass

    assert caught.value.code == 1007


async def test_everything_the_sdk_sends_to_vertex_is_accepted(tls_files: TLSFiles) -> None:
    """A setup with every field the SDK's Vertex converter emits, then every kind of message."""
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        temperature=0.5,
        top_p=0.9,
        top_k=20,
        max_output_tokens=256,
        seed=7,
        media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW,
        speech_config=types.SpeechConfig(
            language_code="en-US",
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")
            ),
        ),
        thinking_config=types.ThinkingConfig(thinking_budget=0),
        enable_affective_dialog=False,
        system_instruction="Be brief.",
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name="get_weather",
                        description="Weather of a city.",
                        parameters=types.Schema(
                            type=types.Type.OBJECT,
                            properties={"city": types.Schema(type=types.Type.STRING)},
                            required=["city"],
                        ),
                        behavior=types.Behavior.BLOCKING,
                    )
                ]
            ),
            # (A search tool too would be refused: Vertex does not combine search with
            # function calling; see test_search_grounding_cannot_be_combined_with_function_calling.)
        ],
        session_resumption=types.SessionResumptionConfig(transparent=True),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(
                disabled=False,
                start_of_speech_sensitivity=types.StartSensitivity.START_SENSITIVITY_HIGH,
                end_of_speech_sensitivity=types.EndSensitivity.END_SENSITIVITY_LOW,
                prefix_padding_ms=20,
                silence_duration_ms=300,
            ),
            activity_handling=types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS,
            turn_coverage=types.TurnCoverage.TURN_INCLUDES_ONLY_ACTIVITY,
        ),
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=10_000, sliding_window=types.SlidingWindow(target_tokens=5_000)
        ),
        proactivity=types.ProactivityConfig(proactive_audio=False),
        explicit_vad_signal=False,
        safety_settings=[
            types.SafetySetting(
                category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
                threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH,
            )
        ],
    )
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="hello")])
            )
            await session.send_realtime_input(
                media=types.Blob(data=b"\0\0" * 160, mime_type="audio/pcm;rate=16000")
            )
            await session.send_realtime_input(
                audio=types.Blob(data=b"\0\0" * 160, mime_type="audio/pcm;rate=16000")
            )
            await session.send_realtime_input(
                video=types.Blob(data=b"\xff\xd8\xff", mime_type="image/jpeg")
            )
            await session.send_context_update(system_instruction="Be very brief.")
            await session.send_realtime_input(text='get_weather {"city": "Oslo"}')
            _, message = await receive_until(session, "tool_call")
            assert message.tool_call is not None
            [call] = message.tool_call.function_calls or []
            await session.send_tool_response(
                function_responses=types.FunctionResponse(
                    id=call.id,
                    name=call.name,
                    response={"temp_c": 3},
                    scheduling=types.FunctionResponseScheduling.WHEN_IDLE,
                )
            )
            turn = await receive_turn(session)

    assert 'get_weather returned "{"temp_c":3}"' in texts(turn)
    kinds = emulator.stats.frames_received
    assert (kinds["audio"], kinds["video"], kinds["context_update"]) == (2, 1, 1)


async def test_a_context_update_changes_instructions_and_tools_for_later_turns(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT, systemInstruction={"parts": [{"text": "old"}]}))
        await recv_setup_complete(ws)
        update = {
            "systemInstruction": {"parts": [{"text": "new"}]},
            "tools": {"tools": [{"functionDeclarations": [{"name": "ping"}]}]},
        }
        await ws.send(json.dumps({"contextUpdate": update}))
        await ws.send(json.dumps({"realtimeInput": {"text": "hello"}}))
        reply = raw_reply_text(await recv_raw_turn(ws))
        await ws.send(json.dumps({"realtimeInput": {"text": "ping"}}))
        while "toolCall" not in (message := await recv_json(ws)):
            pass

    assert reply.endswith('Instructions: "new".')
    assert message["toolCall"]["functionCalls"][0]["name"] == "ping"
