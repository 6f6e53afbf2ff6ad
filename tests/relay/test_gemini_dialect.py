"""The Gemini API dialect on the paths the @google/genai SDK opens, over real sockets.

The SDK itself drives these paths in Chromium (tests/browser); here each translation is checked
frame by frame against the emulator, plus what only a scripted upstream can show: tool calls
that arrive without ids, as Vertex has sent them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator
from app.settings import Settings
from tests.relay.conftest import API_KEY, MODEL, assert_reached_no_upstream
from tests.relay.test_setup_and_closes import close_of, text_turn
from tests.support.relay import RunningRelay, running_relay
from tests.support.sdk import receive_turn, texts
from tests.support.tls import TLSFiles

GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def gemini_url(relay: RunningRelay, path: str = GEMINI_PATH, query: str = f"key={API_KEY}") -> str:
    base = relay.url.removesuffix("/v1/live")
    return f"{base}{path}?{query}"


async def messages_until_turn_complete(ws: ClientConnection) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            seen.append(message)
            if message.get("serverContent", {}).get("turnComplete"):
                return seen


async def open_gemini(url: str, **setup: Any) -> ClientConnection:
    ws = await connect(url)
    await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}", **setup}}))
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in first, first
    return ws


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (GEMINI_PATH, f"key={API_KEY}"),
        ("/" + GEMINI_PATH, f"key={API_KEY}"),  # baseUrl without a path
        (GEMINI_PATH.replace("v1beta", "v1alpha"), f"key={API_KEY}"),
        (GEMINI_PATH.replace("v1beta", "v1"), f"access_token={API_KEY}"),
        (
            "/" + GEMINI_PATH.replace("v1beta", "v1alpha") + "Constrained",
            f"access_token=auth_tokens/{API_KEY}",
        ),
    ],
)
async def test_every_path_the_sdk_opens_serves_a_session_in_vertex_shape_upstream(
    plain_relay: RunningRelay, emulator: Emulator, path: str, query: str
) -> None:
    ws = await open_gemini(gemini_url(plain_relay, path, query))
    await ws.close()
    seen = emulator.stats.setups[-1]
    assert seen["model"].endswith(f"/publishers/google/models/{MODEL}")
    # The Gemini API answers in audio when no modality is named; Vertex needs to be told.
    assert seen["generationConfig"]["responseModalities"] == ["AUDIO"]


async def test_usage_comes_back_with_gemini_api_names(plain_relay: RunningRelay) -> None:
    ws = await open_gemini(
        gemini_url(plain_relay), generationConfig={"responseModalities": ["TEXT"]}
    )
    await ws.send(text_turn("hello"))
    messages = await messages_until_turn_complete(ws)
    await ws.close()
    text = "".join(
        part.get("text", "")
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
    assert 'you said "hello"' in text
    usage = next(m["usageMetadata"] for m in messages if "usageMetadata" in m)
    assert usage["responseTokenCount"] > 0
    assert usage["responseTokensDetails"][0]["modality"] == "TEXT"
    assert "candidatesTokenCount" not in usage
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]


async def test_the_vertex_endpoint_keeps_vertex_usage_names(plain_relay: RunningRelay) -> None:
    async with connect(plain_relay.url, additional_headers={"x-goog-api-key": API_KEY}) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        await ws.recv()
        await ws.send(text_turn("hello"))
        messages = await messages_until_turn_complete(ws)
    usage = next(m["usageMetadata"] for m in messages if "usageMetadata" in m)
    assert "candidatesTokenCount" in usage
    assert "responseTokenCount" not in usage


@pytest.mark.parametrize(
    ("setup", "named"),
    [
        ({"model": "tunedModels/my-model"}, "tuned model"),
        (
            {"model": f"models/{MODEL}", "tools": [{"fileSearch": {}}]},
            "setup.tools[0].fileSearch",
        ),
        (
            {"model": f"models/{MODEL}", "generationConfig": {"enableEnhancedCivicAnswers": True}},
            "setup.generationConfig.enableEnhancedCivicAnswers",
        ),
    ],
)
async def test_gemini_only_setups_are_refused_naming_the_field(
    plain_relay: RunningRelay, emulator: Emulator, setup: dict[str, Any], named: str
) -> None:
    async with connect(gemini_url(plain_relay)) as ws:
        await ws.send(json.dumps({"setup": setup}))
        code, reason = await close_of(ws)
    assert code == 1008
    assert named in reason
    await assert_reached_no_upstream(emulator)


async def test_an_unknown_api_version_is_refused_naming_v1_live(plain_relay: RunningRelay) -> None:
    url = gemini_url(plain_relay, GEMINI_PATH.replace("v1beta", "v9"))
    async with connect(url, origin="http://localhost:3000") as ws:  # type: ignore[arg-type]
        code, reason = await close_of(ws)
    assert code == 4404
    assert "/v1/live" in reason


# --- tool calls without ids, from a scripted Vertex-like upstream -----------------------------


@pytest.fixture
async def idless_upstream() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An upstream that answers each text turn with a tool call that has no id (as Vertex has
    done), then a second call that it cancels without naming ids; it records what it receives."""
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            received.append(message)
            if "setup" in message:
                await ws.send(json.dumps({"setupComplete": {}}).encode())
            elif "clientContent" in message:
                call = {"name": "get_weather", "args": {"city": "Paris"}}
                await ws.send(json.dumps({"toolCall": {"functionCalls": [call]}}).encode())
            elif "toolResponse" in message:
                call = {"name": "get_time", "args": {}}
                await ws.send(json.dumps({"toolCall": {"functionCalls": [call]}}).encode())
                await ws.send(json.dumps({"toolCallCancellation": {}}).encode())
            elif "realtimeInput" in message:
                await ws.send(json.dumps({"serverContent": {"turnComplete": True}}).encode())

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}", received


async def test_tool_calls_without_ids_get_ids_that_map_back_and_gemini_only_input_is_left_out(
    idless_upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = idless_upstream
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        upstream="emulator",
        emulator_url=url,
        api_keys=(SecretStr(API_KEY),),
        port=0,
    )
    async with running_relay(settings) as relay:
        ws = await open_gemini(gemini_url(relay))
        await ws.send(text_turn("weather?"))
        call = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["toolCall"]
        call_id = call["functionCalls"][0]["id"]
        assert call_id
        response = {"id": call_id, "name": "get_weather", "response": {"temp": 20}}
        await ws.send(json.dumps({"toolResponse": {"functionResponses": [response]}}))
        second = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["toolCall"]
        cancelled = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        # audioStreamEnd is Gemini-only: a frame of nothing else is not sent, others lose it.
        await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
        await ws.send(json.dumps({"realtimeInput": {"text": "hi", "audio_stream_end": True}}))
        await asyncio.wait_for(ws.recv(), timeout=10)
        await ws.close()
    second_id = second["functionCalls"][0]["id"]
    assert second_id not in ("", call_id)
    assert cancelled == {"toolCallCancellation": {"ids": [second_id]}}
    # The upstream sent no id, so its answer carries none either.
    answered = next(m for m in received if "toolResponse" in m)
    assert answered["toolResponse"]["functionResponses"] == [
        {"name": "get_weather", "response": {"temp": 20}}
    ]
    assert [m for m in received if "realtimeInput" in m] == [{"realtimeInput": {"text": "hi"}}]


async def test_the_python_sdk_in_gemini_api_mode_gets_typed_usage(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    """The Python SDK's Gemini API mode opens the same path (key in `x-goog-api-key`)."""
    client = genai.Client(
        api_key=API_KEY,
        http_options={
            "base_url": relay.http_url,
            "async_client_args": {"ssl": tls_files.client_context()},
        },
    )
    async with client.aio.live.connect(
        model=MODEL, config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    ) as session:
        await session.send_client_content(
            turns={"role": "user", "parts": [{"text": "Hello"}]}, turn_complete=True
        )
        messages = await receive_turn(session)
    assert 'you said "Hello"' in texts(messages)
    usage = next(m.usage_metadata for m in messages if m.usage_metadata is not None)
    assert usage.prompt_token_count is not None
    assert usage.response_token_count is not None
    assert usage.response_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.response_token_count


async def test_the_python_sdk_starts_a_session_with_a_relay_token_as_its_ephemeral_token(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    """`api_key="auth_tokens/<token>"`: the SDK opens `...Constrained` on v1alpha and sends
    the token as `Authorization: Token auth_tokens/<token>` and in `x-goog-api-key`."""
    async with httpx.AsyncClient(verify=tls_files.client_context()) as http:
        minted = await http.post(
            f"{relay.http_url}/v1/tokens", json={}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert minted.status_code == 200, minted.text
    client = genai.Client(
        api_key=f"auth_tokens/{minted.json()['token']}",
        http_options={
            "base_url": relay.http_url,
            "api_version": "v1alpha",
            "async_client_args": {"ssl": tls_files.client_context()},
        },
    )
    with pytest.warns(genai_errors.ExperimentalWarning, match="ephemeral token"):
        messages = await sdk_text_turn(client, "Hello")
    assert 'you said "Hello"' in texts(messages)


async def sdk_text_turn(client: genai.Client, text: str) -> list[types.LiveServerMessage]:
    async with client.aio.live.connect(
        model=MODEL, config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    ) as session:
        await session.send_client_content(
            turns={"role": "user", "parts": [{"text": text}]}, turn_complete=True
        )
        return await receive_turn(session)


async def test_deeply_nested_gemini_input_does_not_crash_the_session(
    plain_relay: RunningRelay,
) -> None:
    # The dialect parses frames that may carry audioStreamEnd; a frame nested past what
    # `json.loads` can recurse into must not make the relay fail with an internal error.
    ws = await open_gemini(gemini_url(plain_relay))
    nested = "[" * 5000 + "]" * 5000
    await ws.send('{"realtimeInput":{"audioStreamEnd":' + nested + "}}")
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.reason != "internal error", closed.value.rcvd
