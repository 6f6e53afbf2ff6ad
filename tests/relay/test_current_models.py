"""The Gemini 3.8 Live generation through `live-relay serve` and the emulator, end to end:
the models allowed by default, their setup fields past the per-frame policy, a non-blocking
tool call with scheduling, the 58-minute close carried by resumption, and the usage of the
transcription model in the quota and the metrics."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.genai import types
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator, EmulatorConfig
from app.protocol.models import LIVE_3_8, LIVE_3_8_EXTENDED_THINKING, TRANSCRIBE_LIVE
from app.settings import DEFAULT_ALLOWED_MODELS
from tests.relay.conftest import API_KEY, auth_headers, relay_settings, sdk_client
from tests.relay.test_gemini_dialect import gemini_url
from tests.relay.test_quota_metrics import eventually
from tests.relay.test_resumption import switches, wait_until_released
from tests.relay.test_setup_and_closes import close_of
from tests.support.audio import speech
from tests.support.node import needs_js_sdk, run_script
from tests.support.redis_server import RedisServer
from tests.support.relay import RunningRelay, running_relay
from tests.support.scrape import value
from tests.support.sdk import receive_turn, send_audio, texts
from tests.support.tls import TLSFiles

WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather")])
OUTPUT_TEXT = types.AudioTranscriptionConfig()
EXPLICIT_ACTIVITY = types.RealtimeInputConfig(
    automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
)


def transcript(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )


def heard(messages: list[types.LiveServerMessage]) -> list[str]:
    return [
        m.server_content.input_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.input_transcription
    ]


async def speak(session: Any, seconds: float = 0.4) -> None:
    await session.send_realtime_input(activity_start=types.ActivityStart())
    await send_audio(session, speech(seconds))
    await session.send_realtime_input(activity_end=types.ActivityEnd())


def test_the_current_models_are_allowed_by_default_and_the_older_ones_still_are() -> None:
    for model in (LIVE_3_8, LIVE_3_8_EXTENDED_THINKING, TRANSCRIBE_LIVE):
        assert model in DEFAULT_ALLOWED_MODELS
    assert "gemini-live-2.5-flash-native-audio" in DEFAULT_ALLOWED_MODELS


async def test_each_current_model_serves_an_sdk_session_through_the_relay(
    relay: RunningRelay, emulator: Emulator, tls_files: TLSFiles
) -> None:
    client = sdk_client(relay, tls_files)
    speaking = types.LiveConnectConfig(
        output_audio_transcription=OUTPUT_TEXT,
        input_audio_transcription=types.AudioTranscriptionConfig(custom_vocabulary=["Tibbles"]),
        media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW,
        proactivity=types.ProactivityConfig(proactive_audio=True),
        realtime_input_config=EXPLICIT_ACTIVITY,
    )
    async with client.aio.live.connect(model=LIVE_3_8, config=speaking) as session:
        await session.send_realtime_input(text="hello")
        hello = await receive_turn(session)
        await speak(session)
        spoken = await receive_turn(session)

    thinking = types.LiveConnectConfig(
        output_audio_transcription=OUTPUT_TEXT,
        thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.HIGH),
    )
    async with client.aio.live.connect(
        model=LIVE_3_8_EXTENDED_THINKING, config=thinking
    ) as session:
        await session.send_realtime_input(text="think first")
        thought = await receive_turn(session)

    transcribing = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT], realtime_input_config=EXPLICIT_ACTIVITY
    )
    async with client.aio.live.connect(model=TRANSCRIBE_LIVE, config=transcribing) as session:
        await speak(session)
        transcribed = await receive_turn(session)

    assert 'you said "hello"' in transcript(hello)
    [words] = heard(spoken)
    assert words.endswith("with Tibbles]")  # the custom vocabulary reached the model
    assert 'you said "think first"' in transcript(thought)
    assert heard(transcribed) == ["[0.40 s of speech]"]
    assert texts(transcribed) == ""
    setups = emulator.stats.setups
    assert setups[0]["inputAudioTranscription"] == {"customVocabulary": ["Tibbles"]}
    assert setups[1]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "HIGH"}


async def test_a_non_blocking_call_answered_by_name_with_scheduling_through_the_relay(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    client = sdk_client(relay, tls_files)
    config = types.LiveConnectConfig(output_audio_transcription=OUTPUT_TEXT, tools=[WEATHER])
    async with client.aio.live.connect(model=LIVE_3_8, config=config) as session:
        await session.send_realtime_input(text="get_weather please")
        call_turn = await receive_turn(session)
        # The call does not block: the conversation goes on before it is answered.
        await session.send_realtime_input(text="meanwhile, hello")
        meanwhile = await receive_turn(session)
        [call] = [c for m in call_turn if m.tool_call for c in m.tool_call.function_calls or []]
        # Answered as Vertex's asynchronous function calling examples do: by name, no id.
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    name="get_weather",
                    response={"temp_c": 21},
                    scheduling=types.FunctionResponseScheduling.WHEN_IDLE,
                )
            ]
        )
        result = await receive_turn(session)

    assert call.id
    assert 'you said "meanwhile, hello"' in transcript(meanwhile)
    assert 'get_weather returned "{"temp_c":21}"' in transcript(result)


async def test_the_new_setup_fields_pass_the_relay_in_either_spelling(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    setup = {
        "model": LIVE_3_8,
        "generation_config": {"media_resolution": "MEDIA_RESOLUTION_HIGH"},
        "input_audio_transcription": {"custom_vocabulary": ["SKU-42"], "diarization": False},
        "historyConfig": {"initialHistoryInClientContent": True},
        "avatar_config": {"avatar_name": "kai", "video_bitrate_bps": 500_000},
    }
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": setup}))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    seen = emulator.stats.setups[-1]

    assert "setupComplete" in first
    assert seen["generationConfig"]["mediaResolution"] == "MEDIA_RESOLUTION_HIGH"
    assert seen["inputAudioTranscription"]["customVocabulary"] == ["SKU-42"]
    assert seen["avatarConfig"]["videoBitrateBps"] == 500_000


async def test_a_new_setup_field_of_the_wrong_shape_is_refused_by_the_relay_naming_it(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    setup = {"model": LIVE_3_8, "inputAudioTranscription": {"customVocabulary": "SKU-42"}}
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": setup}))
        code, reason = await close_of(ws)

    assert code == 1007
    assert reason.startswith("Invalid value at 'setup.input_audio_transcription.custom_vocabulary'")
    assert not emulator.stats.setups


async def test_the_gemini_dialect_reaches_the_current_models_under_their_own_ids(
    plain_relay: RunningRelay, emulator: Emulator
) -> None:
    async with connect(gemini_url(plain_relay)) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{LIVE_3_8}"}}))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))

    assert "setupComplete" in first
    assert emulator.stats.setups[-1]["model"].endswith(f"/publishers/google/models/{LIVE_3_8}")


async def test_a_session_is_carried_across_the_58_minute_close_by_resumption(
    tls_files: TLSFiles,
) -> None:
    # 58 minutes of the real service are 2 s here; connections otherwise live long.
    deadline = EmulatorConfig(deadline_close_seconds=2.0, connection_lifetime_seconds=600)
    text = types.LiveConnectConfig(output_audio_transcription=OUTPUT_TEXT)
    async with (
        Emulator(deadline) as emulator,
        running_relay(relay_settings(emulator, tls_files)) as relay,
    ):
        client = sdk_client(relay, tls_files)
        async with client.aio.live.connect(model=LIVE_3_8, config=text) as session:
            await session.send_realtime_input(text="remember Tibbles")
            await receive_turn(session)
            await asyncio.sleep(2.5)  # the first connection has been closed 1011 meanwhile
            await session.send_realtime_input(text="and now?")
            after = await receive_turn(session)
        error_switches = switches(relay, "error")

    assert emulator.stats.connections_accepted == 2
    assert error_switches == 1
    assert 'Before that you said "remember Tibbles"' in transcript(after)


async def test_a_resume_refused_after_the_58_minute_close_ends_the_session_saying_so() -> None:
    refusing = EmulatorConfig(deadline_close_seconds=1.5, resume_after_deadline="refuse")
    async with (
        Emulator(refusing) as emulator,
        running_relay(relay_settings(emulator, None)) as relay,
    ):
        ws = await open_raw(relay, generationConfig={"responseModalities": ["AUDIO"]})
        code, reason = await close_of(ws)
        await wait_until_released(relay)

    assert code == 1011
    assert reason == (
        "upstream refused to resume the session after a 1011 Deadline expired close: "
        "1007 Request contains an invalid argument."
    )


async def open_raw(relay: RunningRelay, **setup: Any) -> ClientConnection:
    ws = await connect(relay.url, additional_headers=auth_headers())
    await ws.send(json.dumps({"setup": {"model": LIVE_3_8, **setup}}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    return ws


@pytest.fixture
async def quota_relay(emulator: Emulator, redis_server: RedisServer) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(emulator, None, redis_url=redis_server.url)
    async with running_relay(settings) as running:
        yield running


async def test_the_transcription_models_usage_reaches_the_token_quota_and_the_metrics(
    quota_relay: RunningRelay,
) -> None:
    setup = {
        "model": TRANSCRIBE_LIVE,
        "generationConfig": {"responseModalities": ["TEXT"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
    }
    async with connect(quota_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": setup}))
        await asyncio.wait_for(ws.recv(), timeout=10)
        usage = await transcribe_once(ws)

    tokens = usage["totalTokenCount"]
    assert usage["promptTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 25}]
    samples = await eventually(
        quota_relay,
        lambda s: value(s, "relay_quota_window_tokens", project="default") == tokens,
    )
    assert sum(v for (name, _), v in samples.items() if name == "relay_tokens_total") == tokens


async def test_an_avatar_answers_usage_reaches_the_token_quota_and_the_metrics(
    quota_relay: RunningRelay,
) -> None:
    setup = {"model": LIVE_3_8, "generationConfig": {"responseModalities": ["VIDEO"]}}
    async with connect(quota_relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": setup}))
        await asyncio.wait_for(ws.recv(), timeout=10)
        await ws.send(json.dumps({"realtimeInput": {"text": "show yourself"}}))
        async with asyncio.timeout(10):
            while "usageMetadata" not in (message := json.loads(await ws.recv())):
                pass
    usage = message["usageMetadata"]

    tokens = usage["totalTokenCount"]
    assert usage["candidatesTokensDetails"][0]["modality"] == "AUDIO"  # the voice is billed
    samples = await eventually(
        quota_relay,
        lambda s: value(s, "relay_quota_window_tokens", project="default") == tokens,
    )
    assert sum(v for (name, _), v in samples.items() if name == "relay_tokens_total") == tokens


async def test_a_transcription_model_that_reports_no_usage_is_charged_an_estimate(
    redis_server: RedisServer,
) -> None:
    # As reported of transcription models: not one usageMetadata. Unmetered, such a session
    # would run outside the project's token quota.
    silent = EmulatorConfig(models_without_usage=(TRANSCRIBE_LIVE,))
    setup = {
        "model": TRANSCRIBE_LIVE,
        "generationConfig": {"responseModalities": ["TEXT"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
    }
    async with (
        Emulator(silent) as emulator,
        running_relay(relay_settings(emulator, None, redis_url=redis_server.url)) as relay,
    ):
        async with connect(relay.url, additional_headers=auth_headers()) as ws:
            await ws.send(json.dumps({"setup": setup}))
            await asyncio.wait_for(ws.recv(), timeout=10)
            usage = await transcribe_once(ws)  # the relay's estimate, after the turn
            assert emulator.stats.turns_completed == 1
        samples = await eventually(
            relay, lambda s: value(s, "relay_quota_window_tokens", project="default") == 25
        )

    # One second of 16 kHz speech at 25 tokens a second.
    assert usage == {
        "promptTokenCount": 25,
        "candidatesTokenCount": 0,
        "totalTokenCount": 25,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 25}],
    }
    assert sum(v for (name, _), v in samples.items() if name == "relay_tokens_total") == 25


async def transcribe_once(ws: ClientConnection) -> dict[str, Any]:
    """One second of speech between activity signals; the usage of the turn it makes."""
    audio = {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(speech(1.0)).decode()}
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    await ws.send(json.dumps({"realtimeInput": {"audio": audio}}))
    await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if "usageMetadata" in message:
                usage: dict[str, Any] = message["usageMetadata"]
                return usage


@needs_js_sdk
async def test_the_javascript_sdk_calls_a_function_of_gemini_3_8_live_through_the_relay(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    stdout = await run_script("current_model.mjs", relay.url, API_KEY, ca_file=tls_files.ca_file)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["calls"] == ["get_weather"]
    assert 'get_weather returned "{"temp_c":21}"' in result["transcript"]


async def test_a_24_fps_avatar_stream_crosses_the_relay_whole_within_its_bounds(
    plain_relay: RunningRelay, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long VIDEO answer through the relay at its default bounds: every chunk arrives, each
    well under the 1 MiB a websockets client takes by default. Prints what it measured."""
    story = "a long story " * 30
    async with connect(plain_relay.url, additional_headers=auth_headers()) as ws:
        setup = {"model": LIVE_3_8, "generationConfig": {"responseModalities": ["VIDEO"]}}
        await ws.send(json.dumps({"setup": setup}))
        await asyncio.wait_for(ws.recv(), timeout=10)
        await ws.send(json.dumps({"realtimeInput": {"text": story}}))
        started = asyncio.get_running_loop().time()
        sizes: list[int] = []
        async with asyncio.timeout(30):
            while True:
                frame = await ws.recv()
                message = json.loads(frame)
                parts = message.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
                if any(p.get("inlineData", {}).get("mimeType") == "video/mp4" for p in parts):
                    sizes.append(len(frame))
                if message.get("serverContent", {}).get("turnComplete"):
                    break
        elapsed = asyncio.get_running_loop().time() - started

    frames = emulator.stats.video_frames_sent
    seconds = frames / 24
    assert frames >= 5 * 24  # the reply quotes the story cut short: about 7 s of speech
    assert max(sizes) < 1024 * 1024 // 4
    with capsys.disabled():
        print(
            f"\navatar through the relay: {frames} frames ({seconds:.1f} s at 24 fps) in "
            f"{len(sizes)} chunks of at most {max(sizes) / 1024:.0f} KiB, "
            f"{sum(sizes) / seconds / 1024:.0f} KiB per second of video, "
            f"delivered in {elapsed:.2f} s"
        )
