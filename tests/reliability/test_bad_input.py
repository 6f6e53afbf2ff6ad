"""Bad frames and bodies get their documented answer, never 1011 or a 500; real setups fit the
default setup cap; every token the relay mints works in every place a credential travels."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app.auth.credentials import RELAY_SUBPROTOCOL
from app.auth.token_api import MAX_SESSION_TOKEN_LENGTH
from app.bounded_json import nesting_depth_exceeds
from app.emulator import Emulator
from app.settings import Settings
from tests.relay.conftest import MODEL, auth_headers, relay_settings
from tests.relay.test_setup_and_closes import close_of
from tests.reliability.conftest import record, soak_marks
from tests.support.relay import RunningRelay, running_relay

pytestmark = soak_marks()


@pytest.fixture
async def relay(echo_emulator: Emulator) -> AsyncIterator[RunningRelay]:
    async with running_relay(relay_settings(echo_emulator, None)) as running:
        yield running


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


async def setup_answer(relay: RunningRelay, frame: str | bytes) -> tuple[int, str]:
    async with connect(relay.url, additional_headers=auth_headers(), max_size=None) as ws:
        await ws.send(frame)
        return await close_of(ws)


@pytest.mark.parametrize("depth", [60, 1000, 100_000])
async def test_a_deeply_nested_setup_closes_1007(relay: RunningRelay, depth: int) -> None:
    # 60 levels of {"a": [...]} are 120 of JSON nesting, over the limit of 100.
    setup = {"model": MODEL, "tools": [{"functionDeclarations": [{"parameters": nested(depth)}]}]}
    frame = json.dumps({"setup": setup}) if depth < 1000 else _deep_text(depth)
    code, reason = await setup_answer(relay, frame)
    assert code == 1007, reason
    assert "nested deeper" in reason


def _deep_text(depth: int) -> str:
    # json.dumps itself would hit the recursion limit: build the text directly.
    tools = "[" * depth + '"x"' + "]" * depth
    return f'{{"setup": {{"model": "{MODEL}", "tools": {tools}}}}}'


async def test_brackets_inside_strings_do_not_count_as_nesting(relay: RunningRelay) -> None:
    text = 'Quote this: "[[[{{{' + "[" * 500 + '\\"]' + "}" * 500
    setup = {"model": MODEL, "systemInstruction": {"parts": [{"text": text}]}}
    async with connect(relay.url, additional_headers=auth_headers()) as ws:
        await ws.send(json.dumps({"setup": setup}))
        assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


def test_the_depth_check_costs_little_on_the_largest_setups() -> None:
    real = json.dumps({"setup": large_real_setup()}).encode()
    hostile = b"[" * (512 * 1024) + b"]" * (512 * 1024)
    for name, document in (("real", real), ("hostile", hostile), ("unbalanced", hostile[:-2])):
        started = time.perf_counter()
        nesting_depth_exceeds(document, 100)
        record(f"depth_check_{name}_1mib_ms", round((time.perf_counter() - started) * 1000, 2))
    assert nesting_depth_exceeds(hostile, 100)
    assert nesting_depth_exceeds(hostile[:-2], 100)
    assert not nesting_depth_exceeds(real, 100)


async def test_a_nested_token_request_body_is_answered_400(relay: RunningRelay) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{relay.http_url}/v1/tokens",
            headers=auth_headers(),
            content=b'{"lockedSetup": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def large_real_setup() -> dict[str, Any]:
    """A setup at the top of what the Live API takes: a system instruction filling a 128k-token
    context (~4 characters a token) and 128 function declarations with described parameters."""
    instruction = ("You are a careful assistant for a travel agency. " * 10_500)[:512_000]
    tools = [
        {
            "name": f"tool_{n}",
            "description": "Looks up one kind of booking detail for the customer. " * 6,
            "parameters": {
                "type": "OBJECT",
                "properties": {
                    f"field_{k}": {"type": "STRING", "description": f"Detail {k} of the query"}
                    for k in range(8)
                },
                "required": ["field_0"],
            },
        }
        for n in range(128)
    ]
    return {
        "model": MODEL,
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "systemInstruction": {"parts": [{"text": instruction}]},
        "tools": [{"functionDeclarations": tools}],
    }


async def test_the_largest_real_setup_fits_the_default_cap(relay: RunningRelay) -> None:
    frame = json.dumps({"setup": large_real_setup()})
    default_cap = Settings.model_fields["max_setup_frame_bytes"].default
    record("largest_real_setup_bytes", len(frame))
    assert len(frame) < default_cap
    async with connect(relay.url, additional_headers=auth_headers(), max_size=None) as ws:
        await ws.send(frame)
        assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


async def mint_token(relay: RunningRelay, locked_text: str) -> httpx.Response:
    body = {"uses": 1, "lockedSetup": {"systemInstruction": {"parts": [{"text": locked_text}]}}}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{relay.http_url}/v1/tokens", headers=auth_headers(), json=body)


async def test_the_largest_token_the_relay_mints_works_in_the_url_and_as_a_subprotocol(
    relay: RunningRelay,
) -> None:
    # Grow the locked setup until the next size would be refused: the largest mintable token.
    size, token = 0, ""
    for step in (1024, 256, 64, 16, 4, 1):
        while (response := await mint_token(relay, "x" * (size + step))).status_code == 200:
            size += step
            token = response.json()["token"]
    assert MAX_SESSION_TOKEN_LENGTH - 8 <= len(token) <= MAX_SESSION_TOKEN_LENGTH
    refused = await mint_token(relay, "x" * (size + 1))
    assert refused.status_code == 400
    assert "session token may have" in refused.json()["error"]["message"]
    record("largest_minted_token_chars", len(token))

    setup = json.dumps({"setup": {"model": MODEL}})
    async with connect(f"{relay.url}?access_token={token}") as ws:
        await ws.send(setup)
        assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    token = (await mint_token(relay, "x" * size)).json()["token"]  # one use per token
    offered: list[Any] = [RELAY_SUBPROTOCOL, token]
    async with connect(relay.url, subprotocols=offered) as ws:
        await ws.send(setup)
        assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


@pytest.mark.parametrize("after_setup", [False, True], ids=["as the setup", "mid-session"])
async def test_a_text_frame_that_is_not_utf8_closes_1007_without_an_error_log(
    relay: RunningRelay, caplog: pytest.LogCaptureFixture, after_setup: bool
) -> None:
    caplog.set_level("INFO")
    async with connect(relay.url, additional_headers=auth_headers()) as ws:
        if after_setup:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            assert b"setupComplete" in await asyncio.wait_for(ws.recv(decode=False), 10)
        await ws.send(b'{"realtimeInput": {"text": "caf\xe9"}}', text=True)
        code, reason = await close_of(ws)
    assert (code, reason) == (1007, "Text frame is not valid UTF-8.")
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    assert any("not UTF-8" in record.getMessage() for record in caplog.records)
