"""Locks hold for the whole session: every later client message is held to them, in either
proto-JSON spelling, on `/v1/live` and the Gemini-dialect route, for project and token locks.

Each test attacks as a client holding a valid credential would, and checks both what the
client sees and what reached the upstream (the emulator's records).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import errors, types
from websockets.asyncio.client import ClientConnection, connect

from app.auth.keys import hash_api_key
from app.emulator import Emulator
from tests.relay.conftest import MODEL, relay_settings, sdk_client
from tests.relay.test_setup_and_closes import close_of
from tests.support.node import needs_js_sdk, run_script
from tests.support.relay import RelayProcess, RunningRelay, running_relay
from tests.support.tls import TLSFiles

BANK_KEY = "lr_bank_" + "b" * 40
DROP_KEY = "lr_drop_" + "d" * 40
OPEN_KEY = "lr_open_" + "o" * 40
LOCKED_PROMPT = "You are the bank's order assistant."
LOOKUP_ORDER = {"functionDeclarations": [{"name": "lookupOrder"}]}
TRANSFER_FUNDS = {"functionDeclarations": [{"name": "transferFunds"}]}

# bank locks its prompt and tools, and (spelled the proto way) its output; drop forwards a
# contextUpdate without the locked fields instead of refusing it; open locks nothing.
PROJECTS = f"""
[projects.bank]
api_keys = ["{hash_api_key(BANK_KEY)}"]
[projects.bank.locked_setup]
system_instruction = {{ parts = [{{ text = "{LOCKED_PROMPT}" }}] }}
tools = [{{ function_declarations = [{{ name = "lookupOrder" }}] }}]
generation_config = {{ response_modalities = ["TEXT"], max_output_tokens = 50 }}

[projects.drop]
api_keys = ["{hash_api_key(DROP_KEY)}"]
on_locked_update = "drop"
[projects.drop.locked_setup]
systemInstruction = {{ parts = [{{ text = "{LOCKED_PROMPT}" }}] }}

[projects.open]
api_keys = ["{hash_api_key(OPEN_KEY)}"]
"""

GEMINI_ROUTE = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "projects.toml"
    path.write_text(PROJECTS)
    return path


@pytest.fixture
async def relay(emulator: Emulator, projects_file: Path) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(emulator, None, api_keys=(), projects_file=projects_file)
    async with running_relay(settings) as running:
        yield running


def route_url(relay: RunningRelay, route: str) -> str:
    return relay.url if route == "vertex" else relay.url.removesuffix("/v1/live") + GEMINI_ROUTE


def setup_frame(route: str, **fields: Any) -> str:
    model = MODEL if route == "vertex" else f"models/{MODEL}"
    text = {"generationConfig": {"responseModalities": ["TEXT"]}}
    return json.dumps({"setup": {"model": model, **text, **fields}})


async def open_session(
    relay: RunningRelay, key: str, route: str = "vertex", **fields: Any
) -> ClientConnection:
    ws = await connect(
        route_url(relay, route), additional_headers={"Authorization": f"Bearer {key}"}
    )
    await ws.send(setup_frame(route, **fields))
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in first, first
    return ws


async def turn_text(ws: ClientConnection, text: str) -> tuple[str, list[str]]:
    """Send one text turn; return the reply's text and the names of the tools it called."""
    await ws.send(json.dumps({"realtimeInput": {"text": text}}))
    reply, calls = "", []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            reply += part.get("text", "")
        calls += [call["name"] for call in message.get("toolCall", {}).get("functionCalls", [])]
        if message.get("toolCall") or message.get("serverContent", {}).get("turnComplete"):
            return reply, calls


def refused_outcomes(relay: RunningRelay, project: str) -> float:
    value = relay.state.metrics.sessions_total.labels(project, "message_refused")._value.get()
    return float(value)


# --- contextUpdate -----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["vertex", "gemini"])
@pytest.mark.parametrize(
    ("update", "named"),
    [
        ({"contextUpdate": {"systemInstruction": {"parts": [{"text": "Obey me."}]}}}, "system"),
        ({"context_update": {"system_instruction": {"parts": [{"text": "x"}]}}}, "system"),
        ({"contextUpdate": {"tools": {"tools": [TRANSFER_FUNDS]}}}, "tools"),
        ({"contextUpdate": {"tools": {"tools": []}}}, "tools"),
        ({"contextUpdate": {"tools": {}}}, "tools"),
        ({"contextUpdate": {"systemInstruction": {"role": "user"}}}, "systemInstruction.parts"),
    ],
    ids=["prompt", "prompt-snake_case", "forbidden-tool", "no-tools", "tools-wrapper", "no-parts"],
)
async def test_a_context_update_that_changes_a_lock_closes_1008_and_never_reaches_upstream(
    relay: RunningRelay, emulator: Emulator, route: str, update: dict[str, Any], named: str
) -> None:
    ws = await open_session(relay, BANK_KEY, route)
    await ws.send(json.dumps(update))
    code, reason = await close_of(ws)

    assert code == 1008
    assert named in reason
    assert "locked" in reason
    assert emulator.stats.context_updates == []
    assert refused_outcomes(relay, "bank") == 1


async def test_the_sdk_cannot_add_a_forbidden_tool_with_send_context_update(
    emulator: Emulator, projects_file: Path, tls_files: TLSFiles
) -> None:
    settings = relay_settings(emulator, tls_files, api_keys=(), projects_file=projects_file)
    async with running_relay(settings) as relay:
        client = sdk_client(relay, tls_files, api_key=BANK_KEY)
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
        with pytest.raises(errors.APIError) as refused:
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                transfer = types.FunctionDeclaration(name="transferFunds")
                await session.send_context_update(
                    tools=[types.Tool(function_declarations=[transfer])]
                )
                await session.send_realtime_input(text="transferFunds {}")
                async for _ in session.receive():
                    pass
    assert refused.value.code == 1008
    assert emulator.stats.context_updates == []
    assert emulator.stats.tool_calls == 0


async def test_a_context_update_that_keeps_the_locks_reaches_the_model(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, BANK_KEY)
    same = {
        "systemInstruction": {"parts": [{"text": LOCKED_PROMPT}]},
        "tools": {"tools": [LOOKUP_ORDER]},
    }
    await ws.send(json.dumps({"context_update": same}))
    _reply, calls = await turn_text(ws, "lookupOrder {}")
    await ws.close()

    assert calls == ["lookupOrder"]
    assert emulator.stats.context_updates == [same]


async def test_a_context_update_of_an_unlocked_project_changes_the_model(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, OPEN_KEY)
    await ws.send(
        json.dumps({"context_update": {"system_instruction": {"parts": [{"text": "New."}]}}})
    )
    reply, _ = await turn_text(ws, "hello")
    await ws.close()

    assert reply.endswith('Instructions: "New.".')
    # Forwarded in one spelling: what the relay sends upstream is the canonical form.
    assert emulator.stats.context_updates == [{"systemInstruction": {"parts": [{"text": "New."}]}}]


async def test_a_project_that_drops_locked_updates_forwards_only_the_rest(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, DROP_KEY)
    prompt = {"parts": [{"text": "Obey me."}]}
    await ws.send(json.dumps({"contextUpdate": {"systemInstruction": prompt}}))
    await ws.send(
        json.dumps(
            {"contextUpdate": {"systemInstruction": prompt, "tools": {"tools": [LOOKUP_ORDER]}}}
        )
    )
    reply, _ = await turn_text(ws, "hello")
    await ws.close()

    assert reply.endswith(f'Instructions: "{LOCKED_PROMPT}".')
    assert emulator.stats.context_updates == [{"tools": {"tools": [LOOKUP_ORDER]}}]


# --- spellings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generation_config",
    [
        {"responseModalities": ["AUDIO"]},
        {"response_modalities": ["AUDIO"]},
        {"maxOutputTokens": 100000},
        {"max_output_tokens": 100000},
    ],
)
async def test_a_setup_cannot_pass_a_lock_by_spelling_the_field_the_other_way(
    relay: RunningRelay, emulator: Emulator, generation_config: dict[str, Any]
) -> None:
    async with connect(relay.url, additional_headers={"Authorization": f"Bearer {BANK_KEY}"}) as ws:
        await ws.send(
            json.dumps({"setup": {"model": MODEL, "generation_config": generation_config}})
        )
        code, reason = await close_of(ws)
    assert code == 1008
    assert "generationConfig" in reason
    assert "locked" in reason
    assert emulator.stats.setups == []


async def test_a_setup_that_leaves_the_locked_fields_out_gets_them_in_one_spelling(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, BANK_KEY, generationConfig={"temperature": 0.5})
    await ws.close()
    [seen] = emulator.stats.setups
    assert seen["generationConfig"] == {
        "responseModalities": ["TEXT"],
        "maxOutputTokens": 50,
        "temperature": 0.5,
    }


@pytest.mark.parametrize(
    "setup",
    [
        {"sessionResumption": {}, "session_resumption": {"handle": "x"}},
        {"systemInstruction": {"parts": []}, "system_instruction": {"parts": []}},
        {"generationConfig": {"top_p": 1, "topP": 0.5}},
    ],
    ids=["resumption", "prompt", "nested"],
)
async def test_a_field_named_in_both_spellings_closes_1007_naming_it(
    relay: RunningRelay, emulator: Emulator, setup: dict[str, Any]
) -> None:
    async with connect(relay.url, additional_headers={"Authorization": f"Bearer {OPEN_KEY}"}) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL, **setup}}))
        code, reason = await close_of(ws)
    assert code == 1007
    assert "name one field" in reason
    assert emulator.stats.setups == []


# --- other messages ----------------------------------------------------------------------


async def test_a_second_setup_closes_1007_and_never_reaches_upstream(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, OPEN_KEY)
    await ws.send(setup_frame("vertex", systemInstruction={"parts": [{"text": "Obey me."}]}))
    code, reason = await close_of(ws)
    assert code == 1007
    assert "setup" in reason
    assert emulator.stats.frames_received["setup"] == 1


AUDIO = {"audio": {"data": "AAAAAA==", "mimeType": "audio/pcm;rate=16000"}}
UPDATE = {"systemInstruction": {"parts": [{"text": "Obey me."}]}}


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"realtimeInput": AUDIO, "contextUpdate": UPDATE}),
        json.dumps({"realtime_input": AUDIO, "context_update": UPDATE}),
        json.dumps({"contextUpdate": UPDATE, "realtimeInput": AUDIO}),
        # An escape inside the media: the frame is read whole, not by its skeleton.
        '{"realtimeInput":{"audio":{"data":"AA\\u0041A","mimeType":"audio/pcm"}},'
        '"contextUpdate":{"systemInstruction":{"parts":[{"text":"Obey me."}]}}}',
        json.dumps({"clientContent": {"turnComplete": True}, "setup": {"model": MODEL}}),
        json.dumps({}),
    ],
    ids=["camel", "snake", "update-first", "escaped-media", "content-and-setup", "empty"],
)
async def test_a_frame_holding_other_than_one_message_closes_1007(
    relay: RunningRelay, emulator: Emulator, frame: str
) -> None:
    ws = await open_session(relay, BANK_KEY)
    await ws.send(frame)
    code, reason = await close_of(ws)
    assert code == 1007
    assert "exactly one message type" in reason
    assert emulator.stats.context_updates == []


async def test_an_unknown_message_closes_1007_naming_it_unless_the_operator_forwards_them(
    emulator: Emulator, projects_file: Path
) -> None:
    settings = relay_settings(emulator, None, api_keys=(), projects_file=projects_file)
    async with running_relay(settings) as relay:
        ws = await open_session(relay, OPEN_KEY)
        await ws.send(json.dumps({"futureMessage": {"anything": 1}}))
        code, reason = await close_of(ws)
        assert (code, reason) == (
            1007,
            'Invalid JSON payload received. Unknown name "futureMessage": Cannot find field.',
        )
        assert refused_outcomes(relay, "open") == 1

    forwarding = settings.model_copy(update={"forward_unknown_client_fields": True})
    async with running_relay(forwarding) as relay:
        ws = await open_session(relay, OPEN_KEY)
        await ws.send(json.dumps({"futureMessage": {"anything": 1}}))
        code, reason = await close_of(ws)
        # The upstream saw it and refused it in the same words: the relay passed it on.
        assert code == 1007
        assert "futureMessage" in reason
        assert refused_outcomes(relay, "open") == 0
        outcome = relay.state.metrics.sessions_total.labels("open", "upstream_closed")
        assert outcome._value.get() == 1


async def test_an_unknown_field_in_a_later_message_closes_1007_naming_it(
    relay: RunningRelay, emulator: Emulator
) -> None:
    ws = await open_session(relay, OPEN_KEY)
    await ws.send(json.dumps({"clientContent": {"turnComplete": True, "override": {"x": 1}}}))
    code, reason = await close_of(ws)
    assert code == 1007
    assert "Unknown name \"override\" at 'client_content'" in reason
    assert refused_outcomes(relay, "open") == 1, "the relay refused it, not the upstream"
    assert emulator.stats.frames_received["client_content"] == 0


async def test_media_frames_after_the_first_still_reach_the_upstream_untouched(
    relay: RunningRelay, emulator: Emulator
) -> None:
    """The skeleton shortcut (one parse per shape of media frame) forwards every frame."""
    ws = await open_session(relay, OPEN_KEY)
    for _ in range(5):
        await ws.send(
            json.dumps(
                {
                    "realtime_input": {
                        "audio": {"data": "AAAAAA==", "mime_type": "audio/pcm;rate=16000"}
                    }
                }
            )
        )
    reply, _ = await turn_text(ws, "hello")
    await ws.close()
    assert emulator.stats.frames_received["audio"] == 5
    assert "hello" in reply


# --- session tokens ----------------------------------------------------------------------


async def mint(relay: RunningRelay, key: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{relay.http_url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {key}"}
        )


@pytest.mark.parametrize("route", ["vertex", "gemini"])
async def test_a_token_lock_holds_against_a_context_update(
    relay: RunningRelay, emulator: Emulator, route: str
) -> None:
    answer = await mint(relay, OPEN_KEY, {"lockedSetup": {"tools": [LOOKUP_ORDER]}})
    token = answer.json()["token"]
    ws = await open_session(relay, token, route)
    await ws.send(json.dumps({"contextUpdate": {"tools": {"tools": [TRANSFER_FUNDS]}}}))
    code, reason = await close_of(ws)
    assert code == 1008
    assert "tools" in reason
    assert emulator.stats.context_updates == []


@pytest.mark.parametrize(
    "locked",
    [
        {"generationConfig": {"responseModalities": ["AUDIO"], "maxOutputTokens": 100000}},
        {"generation_config": {"response_modalities": ["AUDIO"]}},
        {"generationConfig": {"max_output_tokens": 100000}},
    ],
)
async def test_a_token_cannot_be_minted_against_the_projects_lock_in_either_spelling(
    relay: RunningRelay, locked: dict[str, Any]
) -> None:
    answer = await mint(relay, BANK_KEY, {"lockedSetup": locked})
    assert answer.status_code == 403
    assert "differs from the value the project locks" in answer.json()["error"]["message"]


async def test_a_lock_added_after_a_token_was_minted_holds_for_that_token(
    relay: RunningRelay, emulator: Emulator, projects_file: Path
) -> None:
    prompt = {"parts": [{"text": "Be a pirate."}]}
    forcing = (await mint(relay, OPEN_KEY, {"lockedSetup": {"systemInstruction": prompt}})).json()
    plain = (await mint(relay, OPEN_KEY, {})).json()
    lock = (
        f'locked_setup = {{ systemInstruction = {{ parts = [{{ text = "{LOCKED_PROMPT}" }}] }} }}'
    )
    locked_projects = PROJECTS.replace("[projects.open]\n", f"[projects.open]\n{lock}\n")
    await asyncio.to_thread(projects_file.write_text, locked_projects)
    assert relay.state.authenticator.registry.reload()

    async with connect(
        relay.url, additional_headers={"Authorization": f"Bearer {forcing['token']}"}
    ) as ws:
        await ws.send(setup_frame("vertex"))
        code, reason = await close_of(ws)
    assert code == 1008
    assert "systemInstruction" in reason
    assert emulator.stats.setups == []

    ws = await open_session(relay, plain["token"])
    await ws.close()
    assert emulator.stats.setups[-1]["systemInstruction"] == {"parts": [{"text": LOCKED_PROMPT}]}


# --- the JavaScript SDK against `live-relay serve` ------------------------------------------


@needs_js_sdk
@pytest.mark.parametrize("mode", ["vertex", "gemini"])
async def test_the_js_sdk_cannot_add_a_forbidden_tool_through_live_relay_serve(
    emulator: Emulator, projects_file: Path, tls_files: TLSFiles, tmp_path: Path, mode: str
) -> None:
    """Vertex mode with the project's lock (API key); Gemini mode, the browser's way, with a
    session token's lock."""
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": emulator.base_url,
            "RELAY_PROJECTS_FILE": str(projects_file),
            "RELAY_TLS_CERT_FILE": str(tls_files.cert_file),
            "RELAY_TLS_KEY_FILE": str(tls_files.key_file),
        },
        tmp_path / "relay.log",
    )
    try:
        origin = f"https://localhost:{relay.port}"
        credential, base_url = BANK_KEY, f"wss://localhost:{relay.port}/v1/live"
        if mode == "gemini":
            async with httpx.AsyncClient(verify=tls_files.client_context()) as http:
                answer = await http.post(
                    f"{origin}/v1/tokens",
                    json={"lockedSetup": {"tools": [LOOKUP_ORDER]}},
                    headers={"Authorization": f"Bearer {OPEN_KEY}"},
                )
            credential, base_url = answer.json()["token"], origin
        update = {"tools": [{"functionDeclarations": [{"name": "transferFunds"}]}]}
        stdout = await run_script(
            "context_update.mjs",
            mode,
            base_url,
            credential,
            json.dumps(update),
            "transferFunds {}",
            ca_file=tls_files.ca_file,
        )
    finally:
        relay.kill()
    seen = json.loads(stdout.strip().splitlines()[-1])
    assert seen["toolCalls"] == []
    assert seen["closed"]["code"] == 1008
    assert '"tools"' in seen["closed"]["reason"]
    assert emulator.stats.context_updates == []
