"""The wire protocol frame by frame, with a bare websockets client (plain ws://)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.emulator import Emulator, EmulatorConfig
from tests.emulator.support import (
    TEXT,
    VERTEX_MODEL,
    VERTEX_PATH,
    closed_with,
    raw_connection,
    raw_reply_text,
    raw_setup,
    recv_json,
    recv_raw_turn,
    recv_setup_complete,
    urlsafe_b64,
)
from tests.support.audio import silence, speech


async def test_snake_case_fields_at_every_depth_and_url_safe_base64_are_accepted(
    emulator: Emulator,
) -> None:
    # Bytes whose base64 needs the characters that differ between the two alphabets.
    awkward = bytes([0xFB, 0xFF, 0xBF] * 2)
    assert set(urlsafe_b64(awkward)) & set("-_")
    async with raw_connection(emulator) as ws:
        await ws.send(
            json.dumps(
                {
                    "setup": {
                        "model": VERTEX_MODEL,
                        "generation_config": {"response_modalities": ["TEXT"]},
                        "realtime_input_config": {
                            "automatic_activity_detection": {"disabled": True}
                        },
                    }
                }
            )
        )
        await recv_setup_complete(ws)
        await ws.send(json.dumps({"realtime_input": {"activity_start": {}}}))
        pcm = awkward + silence(0.25)[len(awkward) :]
        await ws.send(
            json.dumps(
                {
                    "realtime_input": {
                        "audio": {"mime_type": "audio/pcm;rate=16000", "data": urlsafe_b64(pcm)}
                    }
                }
            )
        )
        await ws.send(json.dumps({"realtime_input": {"activity_end": {}}}))
        turn = await recv_raw_turn(ws)

    assert raw_reply_text(turn) == 'Reply 1: you said "[0.25 s of speech]".'
    assert turn[-1]["usageMetadata"]["promptTokensDetails"] == [
        {"modality": "AUDIO", "tokenCount": 7}
    ]


async def test_every_server_message_is_camel_case_json_in_a_binary_frame(
    emulator: Emulator,
) -> None:
    tools = [{"function_declarations": [{"name": "lookup"}]}]
    async with raw_connection(emulator) as ws:
        await ws.send(
            raw_setup(
                tools=tools,
                session_resumption={},
                input_audio_transcription={},
                output_audio_transcription={},
            )
        )
        messages = [await recv_json(ws)]
        await ws.send(json.dumps({"realtime_input": {"text": "lookup"}}))
        while "toolCall" not in messages[-1]:
            messages.append(await recv_json(ws))
        call_id = messages[-1]["toolCall"]["functionCalls"][0]["id"]
        response = {"id": call_id, "name": "lookup", "response": {"found_it": True}}
        await ws.send(json.dumps({"tool_response": {"function_responses": [response]}}))
        messages += [*await recv_raw_turn(ws), await recv_json(ws)]
        pcm = base64.b64encode(speech(0.2) + silence(0.6)).decode()
        await ws.send(json.dumps({"realtimeInput": {"audio": {"data": pcm}}}))
        messages += await recv_raw_turn(ws)

    top_level = {key for message in messages for key in message}
    assert top_level == {
        "setupComplete",
        "serverContent",
        "usageMetadata",
        "toolCall",
        "sessionResumptionUpdate",
    }
    field_names = {key for message in messages for key in _all_keys(message)} - {"found_it"}
    assert not [name for name in field_names if "_" in name]
    assert any("inputTranscription" in m.get("serverContent", {}) for m in messages)


def _all_keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _all_keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _all_keys(v)]
    return []


async def test_with_no_response_modality_given_the_reply_is_audio(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
        turn = await recv_raw_turn(ws)

    parts = [
        p for m in turn for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    ]
    assert parts
    assert all(part["inlineData"]["mimeType"] == "audio/pcm;rate=24000" for part in parts)


async def test_a_first_message_other_than_setup_closes_with_1007(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))
        assert await closed_with(ws) == (1007, "Request contains an invalid argument.")


async def test_a_first_frame_that_is_not_json_closes_with_1007(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send("setup please")
        assert await closed_with(ws) == (1007, "Request contains an invalid argument.")


async def test_a_message_of_the_wrong_shape_closes_with_1007(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send(json.dumps({"clientContent": {"turns": [{"parts": ["not a part"]}]}}))
        code, reason = await closed_with(ws)
    assert code == 1007
    assert reason is not None
    # The service's proto-JSON words, with the snake_case path (cut to 123 bytes).
    assert reason.startswith("Invalid value at 'client_content.turns[0].parts[0]' (")


async def test_an_unknown_model_closes_with_1008_naming_it(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(
            json.dumps(
                {"setup": {"model": VERTEX_MODEL.replace("gemini-live-2.5-flash", "gemini-9")}}
            )
        )
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason is not None
    assert "models/gemini-9 is not found" in reason


async def test_a_model_that_is_not_a_vertex_path_closes_with_1008(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}}))
        code, _ = await closed_with(ws)
    assert code == 1008


async def test_an_unknown_resumption_handle_closes_with_1008_session_not_found(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(sessionResumption={"handle": "no-such-handle"}))
        assert await closed_with(ws) == (1008, "BidiGenerateContent session not found")


async def test_an_expired_resumption_handle_closes_with_1008_session_not_found() -> None:
    async with Emulator(EmulatorConfig(handle_ttl_seconds=0.2)) as emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT, session_resumption={}))
            await recv_json(ws)
            await ws.send(json.dumps({"realtimeInput": {"text": "hi"}}))
            await recv_raw_turn(ws)
            handle = (await recv_json(ws))["sessionResumptionUpdate"]["newHandle"]
        await asyncio.sleep(0.3)
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(sessionResumption={"handle": handle}))
            assert await closed_with(ws) == (1008, "BidiGenerateContent session not found")


async def test_a_malformed_frame_mid_session_closes_with_1007_and_a_reason(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send("{not json")
        code, reason = await closed_with(ws)
    assert code == 1007
    assert reason


async def test_an_unknown_message_mid_session_closes_with_1007_naming_it(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send(json.dumps({"bogusInput": {}}))
        code, reason = await closed_with(ws)
    assert code == 1007
    assert reason is not None
    assert '"bogusInput"' in reason


async def test_bad_base64_closes_with_1007(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send(json.dumps({"realtimeInput": {"audio": {"data": "***"}}}))
        code, reason = await closed_with(ws)
    assert code == 1007
    assert reason is not None
    assert "Base64" in reason


async def test_explicit_activity_signals_with_automatic_detection_on_close_with_1007(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        code, _ = await closed_with(ws)
    assert code == 1007


async def test_realtime_input_sent_before_setup_complete_is_queued_in_order(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        # As js-genai does: no wait for setupComplete.
        await ws.send(raw_setup(**TEXT))
        await ws.send(json.dumps({"realtimeInput": {"text": "one"}}))
        await ws.send(json.dumps({"realtimeInput": {"text": "two"}}))
        await recv_setup_complete(ws)
        first, second = await recv_raw_turn(ws), await recv_raw_turn(ws)

    assert raw_reply_text(first) == 'Reply 1: you said "one".'
    assert raw_reply_text(second).startswith('Reply 2: you said "two".')


async def test_video_frames_are_accepted_counted_and_billed(emulator: Emulator) -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        for _ in range(2):
            await ws.send(
                json.dumps({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": jpeg}}})
            )
        await ws.send(
            json.dumps(
                {"realtimeInput": {"mediaChunks": [{"mimeType": "image/jpeg", "data": jpeg}]}}
            )
        )
        await ws.send(json.dumps({"realtimeInput": {"text": "what do you see?"}}))
        turn = await recv_raw_turn(ws)

    assert emulator.stats.frames_received["video"] == 3
    details = turn[-1]["usageMetadata"]["promptTokensDetails"]
    assert {"modality": "VIDEO", "tokenCount": 3 * 258} in details


async def test_legacy_media_chunks_carry_audio_too(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        pcm = speech(0.3) + silence(0.6)
        for start in range(0, len(pcm), 3200):
            chunk = {
                "mimeType": "audio/pcm;rate=16000",
                "data": base64.b64encode(pcm[start : start + 3200]).decode(),
            }
            await ws.send(json.dumps({"realtimeInput": {"mediaChunks": [chunk]}}))
        turn = await recv_raw_turn(ws)

    assert raw_reply_text(turn) == 'Reply 1: you said "[0.30 s of speech]".'


async def test_audio_stream_end_is_refused_as_vertex_has_no_such_field(
    emulator: Emulator,
) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
        assert await closed_with(ws) == (
            1007,
            'Invalid JSON payload received. Unknown name "audioStreamEnd" at '
            "'realtime_input': Cannot find field.",
        )


async def test_audio_stream_end_can_be_accepted_and_ends_the_current_activity() -> None:
    async with (
        Emulator(EmulatorConfig(audio_stream_end="accept")) as emulator,
        raw_connection(emulator) as ws,
    ):
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        pcm = base64.b64encode(speech(0.4)).decode()
        await ws.send(
            json.dumps(
                {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": pcm}}}
            )
        )
        await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
        turn = await recv_raw_turn(ws)

    assert raw_reply_text(turn) == 'Reply 1: you said "[0.40 s of speech]".'


async def test_the_double_slash_path_of_real_sdk_traffic_is_accepted(emulator: Emulator) -> None:
    async with raw_connection(emulator, path="/" + VERTEX_PATH) as ws:
        await ws.send(raw_setup())
        await recv_setup_complete(ws)


async def test_the_v1_api_path_is_served(emulator: Emulator) -> None:
    async with raw_connection(emulator, path=VERTEX_PATH.replace("v1beta1", "v1")) as ws:
        await ws.send(raw_setup())
        await recv_setup_complete(ws)


async def test_other_paths_are_refused_with_404(emulator: Emulator) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(
            f"{emulator.base_url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        ):
            pass
    assert caught.value.response.status_code == 404


async def test_a_missing_or_wrong_token_closes_with_1008() -> None:
    async with Emulator(EmulatorConfig(require_token="right")) as emulator:
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "right"}):
            async with raw_connection(emulator, headers=headers) as ws:
                await ws.send(raw_setup())
                code, reason = await closed_with(ws)
            assert code == 1008
            assert reason == "Request had invalid authentication credentials."
        async with raw_connection(emulator, headers={"Authorization": "Bearer right"}) as ws:
            await ws.send(raw_setup())
            await recv_setup_complete(ws)


async def test_a_token_predicate_decides_who_gets_in() -> None:
    config = EmulatorConfig(require_token=lambda token: token.startswith("ya29."))
    async with Emulator(config) as emulator:
        async with raw_connection(emulator, headers={"Authorization": "Bearer ya29.abc"}) as ws:
            await ws.send(raw_setup())
            await recv_setup_complete(ws)
        async with raw_connection(emulator, headers={"Authorization": "Bearer nope"}) as ws:
            await ws.send(raw_setup())
            code, _ = await closed_with(ws)
            assert code == 1008


async def test_a_bad_token_can_be_refused_at_the_upgrade_with_401() -> None:
    async with Emulator(EmulatorConfig(require_token="right", auth_failure="reject")) as emulator:
        with pytest.raises(InvalidStatus) as caught:
            async with raw_connection(emulator, headers={"Authorization": "Bearer wrong"}):
                pass
    assert caught.value.response.status_code == 401


async def test_echo_mode_answers_each_audio_chunk_with_the_same_base64_at_once() -> None:
    emulator = Emulator(EmulatorConfig(echo_audio=True))
    async with emulator, raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        data = urlsafe_b64(speech(0.02))
        await ws.send(
            json.dumps(
                {"realtime_input": {"audio": {"mime_type": "audio/pcm;rate=16000", "data": data}}}
            )
        )
        frame = await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "realtimeInput": {
                        "mediaChunks": [{"mimeType": "audio/pcm;rate=16000", "data": "AAAA"}] * 2
                    }
                }
            )
        )
        legacy = [await ws.recv(), await ws.recv()]
        await ws.send(json.dumps({"realtimeInput": {"text": "still talking?"}}))
        turn = await recv_raw_turn(ws)

    assert isinstance(frame, bytes)
    assert json.loads(frame) == {
        "serverContent": {
            "modelTurn": {
                "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}]
            }
        }
    }
    assert [
        json.loads(f)["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"]
        for f in legacy
    ] == ["AAAA", "AAAA"]
    assert raw_reply_text(turn) == 'Reply 1: you said "still talking?".'
    assert emulator.stats.frames_received["audio"] == 3


async def test_stats_count_connections_and_a_clean_client_close(emulator: Emulator) -> None:
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup())
        await recv_json(ws)
        assert emulator.stats.connections_open == 1
    # The handler ends just after the closing handshake: poll briefly for it.
    async with asyncio.timeout(5):
        while emulator.stats.connections_open:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert emulator.stats.connections_accepted == 1


async def test_stop_closes_every_connection_with_1001_and_leaves_no_task_behind() -> None:
    tasks_before = asyncio.all_tasks()
    emulator = Emulator(EmulatorConfig(reply_chunk_interval_seconds=1))
    await emulator.start()
    async with raw_connection(emulator) as ws:
        await ws.send(raw_setup(**TEXT))
        await recv_json(ws)
        await ws.send(json.dumps({"realtimeInput": {"text": "a slow reply"}}))
        await emulator.stop()
        code, _ = await closed_with(ws)
    assert code == 1001
    assert asyncio.all_tasks() == tasks_before


async def test_a_client_that_vanishes_mid_reply_leaves_the_emulator_healthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator = Emulator(EmulatorConfig(reply_chunk_interval_seconds=0.05))
    async with emulator:
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup(**TEXT))
            await recv_json(ws)
            await ws.send(json.dumps({"realtimeInput": {"text": "a reply to nobody"}}))
            await recv_json(ws)
            ws.transport.abort()
        async with asyncio.timeout(5):
            while emulator.stats.connections_open:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        async with raw_connection(emulator) as ws:
            await ws.send(raw_setup())
            await recv_setup_complete(ws)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("accepting", [False, True])
async def test_permessage_deflate_is_negotiated_only_when_configured(accepting: bool) -> None:
    # websockets' client offers permessage-deflate, as the SDKs do.
    async with Emulator(EmulatorConfig(permessage_deflate=accepting)) as emulator:
        async with raw_connection(emulator) as ws:
            assert bool(ws.protocol.extensions) is accepting
            await ws.send(raw_setup(**TEXT))
            await recv_setup_complete(ws)
        assert emulator.stats.compressed_connections == (1 if accepting else 0)
