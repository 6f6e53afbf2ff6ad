"""Text and audio turns through the google-genai SDK, in Vertex mode, over wss://."""

from __future__ import annotations

from google.genai import types

from app.emulator.speech import VOICE_PITCH_HZ
from tests.emulator.support import (
    MODEL,
    VERTEX_MODEL,
    audio_blobs,
    dominant_pitch_hz,
    input_transcripts,
    output_transcript,
    sdk_client,
    tls_emulator,
)
from tests.support.audio import silence, speech
from tests.support.sdk import receive_turn, send_audio, server_flags, texts
from tests.support.tls import TLSFiles

TEXT_ONLY: types.LiveConnectConfigDict = {"response_modalities": [types.Modality.TEXT]}


async def test_a_text_turn_streams_a_reply_that_quotes_the_input_then_completes(
    tls_files: TLSFiles,
) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_ONLY) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="hello emulator")]),
                turn_complete=True,
            )
            messages = await receive_turn(session)

    chunks = [m.text for m in messages if m.text]
    assert len(chunks) > 1, "the reply is streamed in several chunks"
    assert texts(messages) == 'Reply 1: you said "hello emulator".'
    assert server_flags(messages) == ["generation_complete", "turn_complete"]
    usage = messages[-1].usage_metadata
    assert usage is not None
    # 14 characters of input: 4 tokens; 35 characters of reply: 9 tokens.
    assert (usage.prompt_token_count, usage.response_token_count) == (4, 9)
    assert usage.total_token_count == 13
    assert usage.response_tokens_details == [
        types.ModalityTokenCount(modality=types.MediaModality.TEXT, token_count=9)
    ]


async def test_consecutive_text_turns_get_distinct_numbered_replies(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=TEXT_ONLY) as session:
            await session.send_realtime_input(text="first")
            first = texts(await receive_turn(session))
            await session.send_realtime_input(text="second")
            second = texts(await receive_turn(session))

    assert first == 'Reply 1: you said "first".'
    assert second == 'Reply 2: you said "second". Before that you said "first".'


async def test_setup_reaches_the_service_and_shapes_the_reply(tls_files: TLSFiles) -> None:
    config: types.LiveConnectConfigDict = {
        **TEXT_ONLY,
        "system_instruction": "Answer like a pirate.",
    }
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files, token="secret-access-token")
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await session.send_realtime_input(text="ahoy")
            reply = texts(await receive_turn(session))

        assert emulator.stats.last_authorization == "Bearer secret-access-token"
        [setup] = emulator.stats.setups
    assert setup["model"] == VERTEX_MODEL
    assert reply == 'Reply 1: you said "ahoy". Instructions: "Answer like a pirate.".'


async def test_an_audio_turn_is_detected_transcribed_and_answered_with_24khz_audio(
    tls_files: TLSFiles,
) -> None:
    config: types.LiveConnectConfigDict = {
        "response_modalities": [types.Modality.AUDIO],
        "input_audio_transcription": {},
        "output_audio_transcription": {},
    }
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await send_audio(session, speech(0.6) + silence(0.8))
            messages = await receive_turn(session)

    assert input_transcripts(messages) == ["[0.60 s of speech]"]
    reply = 'Reply 1: you said "[0.60 s of speech]".'
    assert output_transcript(messages) == reply
    audio_parts = audio_blobs(messages)
    assert len(audio_parts) > 1
    assert {part.mime_type for part in audio_parts} == {"audio/pcm;rate=24000"}
    audio = b"".join(part.data or b"" for part in audio_parts)
    # 39 characters spoken at 50 ms each: 1.95 s of 16-bit samples at 24 kHz.
    assert len(reply) == 39
    assert len(audio) == 2 * round(24_000 * 1.95)
    assert server_flags(messages) == ["generation_complete", "turn_complete"]
    usage = messages[-1].usage_metadata
    assert usage is not None
    # At 25 tokens per second, rounded up: in, the audio up to the end of the turn (0.6 s of
    # speech and the 0.5 s of silence that ended it); out, 1.95 s.
    assert usage.prompt_tokens_details == [
        types.ModalityTokenCount(modality=types.MediaModality.AUDIO, token_count=28)
    ]
    assert usage.response_token_count == 49


async def test_the_voice_name_sets_the_pitch_of_the_reply(tls_files: TLSFiles) -> None:
    pitches = {}
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        for voice in ("Puck", "Kore"):
            config: types.LiveConnectConfigDict = {
                "response_modalities": [types.Modality.AUDIO],
                "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": voice}}},
            }
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await session.send_realtime_input(text="sing")
                audio = b"".join(m.data or b"" for m in await receive_turn(session))
            pitches[voice] = dominant_pitch_hz(audio)

    assert abs(pitches["Puck"] - VOICE_PITCH_HZ["Puck"]) < 3
    assert abs(pitches["Kore"] - VOICE_PITCH_HZ["Kore"]) < 3
