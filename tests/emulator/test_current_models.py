"""The Gemini 3.8 Live generation as Vertex documents it (see docs/emulator-fidelity.md)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from app.emulator import Emulator, EmulatorConfig
from app.emulator.caps import DEADLINE_EXPIRED
from app.emulator.wire import INVALID_ARGUMENT
from tests.emulator.support import (
    closed_with,
    raw_connection,
    raw_reply_text,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
)
from tests.support.audio import speech

LIVE = "gemini-3.8-live"
EXTENDED = "gemini-3.8-live-extended-thinking"
TRANSCRIBE = "gemini-3.5-transcribe-live"
WEATHER = [{"functionDeclarations": [{"name": "get_weather"}]}]
EXPLICIT_ACTIVITY = {"automaticActivityDetection": {"disabled": True}}
AUDIO_OUT = {"responseModalities": ["AUDIO"]}


def vertex_model(model: str) -> str:
    return f"projects/p/locations/us-central1/publishers/google/models/{model}"


async def open_session(ws: ClientConnection, model: str, **setup: Any) -> None:
    await ws.send(json.dumps({"setup": {"model": vertex_model(model), **setup}}))
    await recv_setup_complete(ws)


async def refused_setup(emulator: Emulator, model: str, **setup: Any) -> tuple[Any, Any]:
    async with raw_connection(emulator) as ws:
        await ws.send(json.dumps({"setup": {"model": vertex_model(model), **setup}}))
        return await closed_with(ws)


async def speak(ws: ClientConnection, seconds: float = 0.4) -> None:
    """One utterance between explicit activity signals (automatic detection off)."""
    audio = {"mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(speech(seconds)).decode()}
    await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
    await ws.send(json.dumps({"realtimeInput": {"audio": audio}}))
    await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))


def tool_call(turn: list[dict[str, Any]]) -> dict[str, Any]:
    [message] = [m for m in turn if "toolCall" in m]
    [call] = message["toolCall"]["functionCalls"]
    result: dict[str, Any] = call
    return result


def answer(*responses: dict[str, Any]) -> str:
    return json.dumps({"toolResponse": {"functionResponses": list(responses)}})


async def test_the_current_models_are_known_and_the_older_ones_still_are(
    emulator: Emulator,
) -> None:
    for model in (LIVE, EXTENDED, "gemini-live-2.5-flash-native-audio"):
        async with raw_connection(emulator) as ws:
            await open_session(ws, model, generationConfig=AUDIO_OUT)
    async with raw_connection(emulator) as ws:
        await open_session(ws, TRANSCRIBE, generationConfig={"responseModalities": ["TEXT"]})


async def test_gemini_3_8_live_calls_functions_without_blocking_and_schedules_answers() -> None:
    config = EmulatorConfig(reply_chunk_interval_seconds=0.05)
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, LIVE, tools=WEATHER, outputAudioTranscription={})
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call_turn = await recv_raw_turn(ws)
        # The call does not hold the conversation: a new question is answered meanwhile.
        await ws.send(json.dumps({"realtimeInput": {"text": "meanwhile, tell me a long story"}}))
        await recv_json(ws)  # the reply has begun
        call = tool_call(call_turn)
        await ws.send(answer({"id": call["id"], "name": call["name"], "response": {"t": 1},
                              "scheduling": "INTERRUPT"}))  # fmt: skip
        cut = await recv_raw_turn(ws)
        result = await recv_raw_turn(ws)

    # The call ends its turn at once.
    assert [m for m in call_turn if "serverContent" in m][-1]["serverContent"] == {
        "turnComplete": True
    }
    assert any("generationComplete" in m.get("serverContent", {}) for m in call_turn)
    assert any(m.get("serverContent", {}).get("interrupted") for m in cut)
    assert 'get_weather returned "{"t":1}"' in "".join(
        m["serverContent"]["outputTranscription"]["text"]
        for m in result
        if "outputTranscription" in m.get("serverContent", {})
    )


async def test_proactive_audio_is_always_on_and_asking_it_off_is_refused(
    emulator: Emulator,
) -> None:
    off = {"proactiveAudio": False}
    assert await refused_setup(emulator, LIVE, proactivity=off) == (1007, INVALID_ARGUMENT)
    assert await refused_setup(emulator, EXTENDED, proactivity=off) == (1007, INVALID_ARGUMENT)
    async with raw_connection(emulator) as ws:  # on, or not said: accepted
        await open_session(ws, LIVE, proactivity={"proactiveAudio": True})
    async with raw_connection(emulator) as ws:  # the 2.5 models still let it be turned off
        await open_session(ws, "gemini-live-2.5-flash-native-audio", proactivity=off)


async def test_thinking_settings_are_refused_where_vertex_says_so(emulator: Emulator) -> None:
    thinking = {**AUDIO_OUT, "thinkingConfig": {"thinkingLevel": "LOW"}}
    assert await refused_setup(emulator, LIVE, generationConfig=thinking) == (
        1007,
        INVALID_ARGUMENT,
    )
    async with raw_connection(emulator) as ws:
        await open_session(ws, EXTENDED, generationConfig=thinking)
    async with raw_connection(emulator) as ws:
        await open_session(ws, "gemini-live-2.5-flash", generationConfig=thinking)


async def test_search_grounding_cannot_be_combined_with_function_calling(
    emulator: Emulator,
) -> None:
    both = [*WEATHER, {"googleSearch": {}}]
    assert await refused_setup(emulator, LIVE, tools=both) == (1007, INVALID_ARGUMENT)
    async with raw_connection(emulator) as ws:
        await open_session(ws, LIVE, tools=[{"googleSearch": {}}])
    lenient = EmulatorConfig(search_with_function_calling="allow")
    async with Emulator(lenient) as emulator_allowing, raw_connection(emulator_allowing) as ws:
        await open_session(ws, LIVE, tools=both)


async def test_turn_complete_interrupts_the_reply_whatever_activity_handling_says() -> None:
    config = EmulatorConfig(reply_chunk_interval_seconds=0.3)
    no_interruption = {"activityHandling": "NO_INTERRUPTION"}
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await open_session(
            ws, LIVE, realtimeInputConfig=no_interruption, outputAudioTranscription={}
        )
        await ws.send(json.dumps({"realtimeInput": {"text": "tell me a long story"}}))
        await recv_json(ws)  # the reply has begun
        part = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "and "}]}]}}
        await ws.send(json.dumps(part))  # without turnComplete: the model waits for more
        await asyncio.sleep(0.1)
        await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
        story = await recv_raw_turn(ws)
        answer_turn = await recv_raw_turn(ws)

    flags = [key for m in story for key in m.get("serverContent", {})]
    assert "interrupted" in flags
    assert "generationComplete" not in flags
    assert any("outputTranscription" in m.get("serverContent", {}) for m in answer_turn)


async def test_the_2_5_models_keep_no_interruption_for_client_content() -> None:
    config = EmulatorConfig(reply_chunk_interval_seconds=0.02)
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await open_session(
            ws,
            "gemini-live-2.5-flash",
            generationConfig={"responseModalities": ["TEXT"]},
            realtimeInputConfig={"activityHandling": "NO_INTERRUPTION"},
        )
        await ws.send(json.dumps({"realtimeInput": {"text": "tell me a long story"}}))
        await recv_json(ws)
        turn = {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}
        await ws.send(json.dumps({"clientContent": turn}))
        story = await recv_raw_turn(ws)

    assert not any(m.get("serverContent", {}).get("interrupted") for m in story)


async def test_media_resolution_and_the_new_setup_fields_are_accepted(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(
            ws,
            LIVE,
            generationConfig={**AUDIO_OUT, "mediaResolution": "MEDIA_RESOLUTION_LOW"},
            input_audio_transcription={"custom_vocabulary": ["Kubernetes"], "diarization": False},
            history_config={"initialHistoryInClientContent": False},
            avatarConfig={"avatarName": "kai", "videoBitrateBps": 500_000},
        )
    assert await refused_setup(
        emulator, LIVE, generationConfig={"mediaResolution": "MEDIA_RESOLUTION_HUGE"}
    ) == (
        1007,
        "Invalid value at 'setup.generation_config.media_resolution' "
        "(type.googleapis.com/google.cloud.aiplatform.v1beta1.MediaResol",  # cut at 123 bytes
    )


async def test_media_resolution_sets_the_tokens_a_video_frame_costs(emulator: Emulator) -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()
    billed = {}
    for resolution in ("MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_HIGH", None):
        generation: dict[str, Any] = {**AUDIO_OUT}
        if resolution is not None:
            generation["mediaResolution"] = resolution
        async with raw_connection(emulator) as ws:
            await open_session(ws, LIVE, generationConfig=generation)
            for _ in range(2):
                video = {"mimeType": "image/jpeg", "data": jpeg}
                await ws.send(json.dumps({"realtimeInput": {"video": video}}))
            await ws.send(json.dumps({"realtimeInput": {"text": "what do you see?"}}))
            turn = await recv_raw_turn(ws)
        details = turn[-1]["usageMetadata"]["promptTokensDetails"]
        billed[resolution] = next(d["tokenCount"] for d in details if d["modality"] == "VIDEO")

    assert billed == {
        "MEDIA_RESOLUTION_LOW": 2 * 64,
        "MEDIA_RESOLUTION_HIGH": 2 * 256,
        None: 2 * 258,
    }


async def test_a_custom_vocabulary_reaches_the_input_transcription(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(
            ws,
            LIVE,
            realtimeInputConfig=EXPLICIT_ACTIVITY,
            inputAudioTranscription={"customVocabulary": ["Kubernetes", "SKU-42"]},
        )
        await speak(ws)
        turn = await recv_raw_turn(ws)

    [heard] = [
        m["serverContent"]["inputTranscription"]["text"]
        for m in turn
        if "inputTranscription" in m.get("serverContent", {})
    ]
    assert heard.endswith("with Kubernetes, SKU-42]")


async def test_the_transcription_model_transcribes_and_reports_usage(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(
            ws,
            TRANSCRIBE,
            generationConfig={"responseModalities": ["TEXT"]},
            realtimeInputConfig=EXPLICIT_ACTIVITY,
        )
        await speak(ws, 0.4)
        turn = await recv_raw_turn(ws)

    assert [list(m["serverContent"]) for m in turn if "serverContent" in m][-2:] == [
        ["inputTranscription"],
        ["turnComplete"],
    ]
    assert raw_reply_text(turn) == ""  # it says nothing
    usage = turn[-1]["usageMetadata"]
    assert usage["promptTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 10}]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


async def test_the_transcription_model_only_writes_and_calls_nothing(emulator: Emulator) -> None:
    assert await refused_setup(emulator, TRANSCRIBE, generationConfig=AUDIO_OUT) == (
        1007,
        INVALID_ARGUMENT,
    )
    text = {"responseModalities": ["TEXT"]}
    assert await refused_setup(emulator, TRANSCRIBE, generationConfig=text, tools=WEATHER) == (
        1007,
        INVALID_ARGUMENT,
    )


async def test_a_model_can_be_told_to_send_no_usage_as_reported() -> None:
    config = EmulatorConfig(models_without_usage=(TRANSCRIBE,))
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await open_session(
            ws,
            TRANSCRIBE,
            generationConfig={"responseModalities": ["TEXT"]},
            realtimeInputConfig=EXPLICIT_ACTIVITY,
        )
        await speak(ws)
        turn = await recv_raw_turn(ws)

    assert turn[-1] == {"serverContent": {"turnComplete": True}}


async def test_connections_are_closed_at_the_hard_deadline_even_with_compression() -> None:
    config = EmulatorConfig(deadline_close_seconds=0.3)
    async with Emulator(config) as emulator, raw_connection(emulator) as ws:
        await open_session(ws, LIVE, contextWindowCompression={"slidingWindow": {}})
        started = asyncio.get_running_loop().time()
        closed = await closed_with(ws)
        elapsed = asyncio.get_running_loop().time() - started

    assert closed == (1011, DEADLINE_EXPIRED)
    assert elapsed < 0.3 + 0.5


async def test_a_resume_after_the_hard_deadline_follows_the_policy() -> None:
    for policy in ("allow", "refuse"):
        config = EmulatorConfig(deadline_close_seconds=0.5, resume_after_deadline=policy)
        async with Emulator(config) as emulator:
            async with raw_connection(emulator) as ws:
                await ws.send(
                    json.dumps({"setup": {"model": vertex_model(LIVE), "sessionResumption": {}}})
                )
                await recv_setup_complete(ws)
                update = await recv_json(ws)
                handle = update["sessionResumptionUpdate"]["newHandle"]
                assert await closed_with(ws) == (1011, DEADLINE_EXPIRED)
            async with raw_connection(emulator) as ws:
                resume = {"model": vertex_model(LIVE), "sessionResumption": {"handle": handle}}
                await ws.send(json.dumps({"setup": resume}))
                if policy == "allow":
                    await recv_setup_complete(ws)
                else:
                    assert await closed_with(ws) == (1007, INVALID_ARGUMENT)


async def test_a_tool_response_without_an_id_is_matched_by_its_name(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(ws, LIVE, tools=WEATHER, outputAudioTranscription={})
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        call = tool_call(await recv_raw_turn(ws))
        assert call["id"]
        # As Vertex's asynchronous function calling examples answer: by name, no id.
        await ws.send(answer({"name": "get_weather", "response": {"t": 2}}))
        result = await recv_raw_turn(ws)

    assert 'get_weather returned "{"t":2}"' in "".join(
        m["serverContent"]["outputTranscription"]["text"]
        for m in result
        if "outputTranscription" in m.get("serverContent", {})
    )


async def test_an_ambiguous_tool_response_without_an_id_is_refused_saying_why(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(ws, LIVE, tools=WEATHER)
        for _ in range(2):
            await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
            tool_call(await recv_raw_turn(ws))
        await ws.send(answer({"name": "get_weather", "response": {}}))
        closed = await closed_with(ws)

    assert closed == (
        1007,
        "tool_response.function_responses[0] has no id, "
        'and 2 pending calls are named "get_weather"',
    )


async def test_a_tool_response_with_neither_id_nor_name_is_refused(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(ws, LIVE, tools=WEATHER)
        await ws.send(json.dumps({"realtimeInput": {"text": "get_weather please"}}))
        tool_call(await recv_raw_turn(ws))
        await ws.send(answer({"response": {}}))
        closed = await closed_with(ws)

    assert closed == (
        1007,
        "tool_response.function_responses[0] has neither an id nor a name: "
        "it answers no function call",
    )


async def test_the_deadline_can_count_over_the_conversation_across_resumptions() -> None:
    config = EmulatorConfig(
        connection_lifetime_seconds=0.4,
        goaway_notice_seconds=0,
        deadline_close_seconds=0.6,
        deadline_close_scope="conversation",
    )
    setup = {"model": vertex_model(LIVE), "sessionResumption": {}}
    async with Emulator(config) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(json.dumps({"setup": setup}))
            await recv_setup_complete(ws)
            handle = (await recv_json(ws))["sessionResumptionUpdate"]["newHandle"]
            first = await closed_with(ws)  # its own lifetime ends it, before the deadline
        async with raw_connection(emulator) as ws:
            resume = {**setup, "sessionResumption": {"handle": handle}}
            await ws.send(json.dumps({"setup": resume}))
            await recv_setup_complete(ws)
            second = await closed_with(ws)  # the conversation's deadline comes first

    assert first == (1000, "The operation was cancelled.")
    assert second == (1011, DEADLINE_EXPIRED)


def mp4_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level ISO BMFF boxes of `data`: (type, body)."""
    boxes, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        assert size >= 8, "a box shorter than its header"
        boxes.append((data[at + 4 : at + 8], data[at + 8 : at + size]))
        at += size
    assert at == len(data), "the last box runs past the data"
    return boxes


def trun_sample_count(moof: bytes) -> int:
    at = moof.index(b"trun")
    return int.from_bytes(moof[at + 8 : at + 12], "big")


async def test_an_avatar_speaks_and_shows_itself_in_mp4_chunks_at_24_fps(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await open_session(
            ws,
            LIVE,
            generationConfig={"responseModalities": ["VIDEO"]},
            outputAudioTranscription={},
        )
        await ws.send(json.dumps({"realtimeInput": {"text": "show yourself"}}))
        turn = await recv_raw_turn(ws)

    blobs = [
        part["inlineData"]
        for m in turn
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
        if "inlineData" in part
    ]
    audio = [b for b in blobs if b["mimeType"] == "audio/pcm;rate=24000"]
    video = [base64.b64decode(b["data"]) for b in blobs if b["mimeType"] == "video/mp4"]
    assert video
    assert len(video) == len(audio)  # a chunk of video for each chunk of speech
    frames = 0
    for chunk in video:
        assert [kind for kind, _ in mp4_boxes(chunk)] == [b"ftyp", b"moov", b"moof", b"mdat"]
        frames += trun_sample_count(dict(mp4_boxes(chunk))[b"moof"])
    speech_seconds = sum(len(base64.b64decode(b["data"])) / 2 / 24_000 for b in audio)
    assert abs(frames - speech_seconds * 24) <= len(video)  # 24 fps, rounded per chunk
    assert emulator.stats.video_frames_sent == frames


async def test_only_the_avatar_models_answer_in_video(emulator: Emulator) -> None:
    video = {"responseModalities": ["VIDEO"]}
    assert await refused_setup(
        emulator, "gemini-live-2.5-flash-native-audio", generationConfig=video
    ) == (
        1007,
        INVALID_ARGUMENT,
    )
