"""The production path end to end: google-genai SDK -> `live-relay serve` (a real process, with
RELAY_UPSTREAM=vertex) -> wss:// with the endpoint's own CA -> the emulator, which accepts only a
token the local Google token endpoint issued and that has not expired.

One relay process per credential kind serves a text turn, a tool call and an audio turn, and
refreshes its access token in the background before it expires, while a session stays open.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, live, types

from app.emulator import Emulator, EmulatorConfig
from tests.production.launch import (
    API_KEY,
    CREDENTIAL_KINDS,
    DEPLOYED_SETTINGS,
    PROJECT,
    TEST_ENDPOINT_SETTINGS,
    CredentialKind,
    vertex_launch,
)
from tests.support.audio import silence, speech
from tests.support.net import free_port
from tests.support.relay import RelayProcess
from tests.support.scrape import scrape, value
from tests.support.sdk import receive_turn, send_audio, texts
from tests.support.tcp_proxy import ConnectProxy
from tests.support.tls import TLSFiles, make_tls_files
from tests.support.token_server import token_server

MODEL = "gemini-live-2.5-flash"
TOKEN_SECONDS = 3
REFRESH_MARGIN_SECONDS = 2.0  # above 1: a session opened 1 s before expiry must refresh

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
    ),
)
TEXT_WITH_TOOLS = types.LiveConnectConfig(
    response_modalities=[types.Modality.TEXT],
    tools=[types.Tool(function_declarations=[WEATHER])],
)
AUDIO = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    output_audio_transcription=types.AudioTranscriptionConfig(),
)


def sdk_client(relay: RelayProcess, tls_files: TLSFiles) -> genai.Client:
    return genai.Client(
        vertexai=True,
        http_options={
            "base_url": relay.url("wss"),
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "async_client_args": {"ssl": tls_files.client_context()},
        },
    )


async def text_turn(session: live.AsyncSession, text: str) -> str:
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
    )
    return texts(await receive_turn(session))


async def tool_call_round_trip(session: live.AsyncSession) -> str:
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text='get_weather {"city": "Oslo"}')]),
        turn_complete=True,
    )
    call = None
    async with asyncio.timeout(10):
        async for message in session.receive():
            if message.tool_call and message.tool_call.function_calls:
                call = message.tool_call.function_calls[0]
                break
    assert call is not None
    assert (call.name, call.args) == ("get_weather", {"city": "Oslo"})
    await session.send_tool_response(
        function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"c": 7})]
    )
    return texts(await receive_turn(session))


async def audio_turn(session: live.AsyncSession) -> tuple[bytes, str]:
    await send_audio(session, speech(0.6) + silence(1.0))
    messages = await receive_turn(session)
    audio = b"".join(m.data or b"" for m in messages)
    spoken = "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    return audio, spoken


def bearer_token(authorization: str | None) -> str:
    assert authorization is not None
    assert authorization.startswith("Bearer ")
    return authorization.removeprefix("Bearer ")


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.time()))


@pytest.mark.parametrize("kind", CREDENTIAL_KINDS)
async def test_sdk_sessions_reach_vertex_over_verified_tls_with_fresh_tokens(
    kind: CredentialKind, tls_files: TLSFiles, tmp_path: Path
) -> None:
    with token_server(expires_in=TOKEN_SECONDS) as tokens:
        config = EmulatorConfig(require_token=tokens.valid, known_projects=(PROJECT,))
        async with Emulator(config, ssl_context=tls_files.server_context()) as emulator:
            launch = vertex_launch(
                kind,
                tokens,
                emulator,
                tls_files,
                tmp_path,
                RELAY_TOKEN_REFRESH_MARGIN_SECONDS=str(REFRESH_MARGIN_SECONDS),
            )
            vertex_settings = {
                name
                for name in launch.env
                if name.startswith("RELAY_VERTEX_") or name == "RELAY_UPSTREAM"
            }
            assert vertex_settings - TEST_ENDPOINT_SETTINGS == DEPLOYED_SETTINGS[kind]
            relay = RelayProcess(launch.env, tmp_path / "relay.log", module=launch.module)
            try:
                client = sdk_client(relay, tls_files)
                async with client.aio.live.connect(model=MODEL, config=TEXT_WITH_TOOLS) as first:
                    first_token = bearer_token(emulator.stats.last_authorization)
                    assert 'you said "hello vertex"' in await text_turn(first, "hello vertex")
                    reply = await tool_call_round_trip(first)
                    # No session opens while the first session's token expires: the relay
                    # refreshes ahead of need (every second here: 3 s tokens, a 2 s margin).
                    # One refresh before the expiry is what matters; a loaded machine (the
                    # suite runs in parallel) can make google-auth's refresh, a thread's
                    # HTTP round trip, late for a second one.
                    await sleep_until(tokens.expires_at[first_token] + 0.2)
                    assert len(tokens.issued) >= tokens.issued.index(first_token) + 2
                    async with client.aio.live.connect(model=MODEL, config=AUDIO) as second:
                        second_token = bearer_token(emulator.stats.last_authorization)
                        audio, spoken = await audio_turn(second)
                    # The first session's token has expired: the session it opened goes on.
                    assert "once more" in await text_turn(first, "once more")
                log = relay.output()
            finally:
                relay.kill()
    assert "get_weather returned" in reply
    assert "7" in reply
    assert len(audio) > 24_000  # over half a second of 24 kHz 16-bit speech
    assert spoken
    assert second_token != first_token  # a newer one, which the emulator found unexpired
    kind_in_log = {
        "service_account": "service account relay@test-project",
        "authorized_user": "authorized user",
        "metadata_server": "metadata server",
    }[kind]
    assert f"Vertex AI credentials: {kind_in_log}" in log
    assert "ya29." not in log  # access tokens never reach the log
    model_path = f"projects/{PROJECT}/locations/us-central1/publishers/google/models/{MODEL}"
    assert [setup["model"] for setup in emulator.stats.setups] == [model_path, model_path]


async def test_an_untrusted_endpoint_certificate_reaches_the_sdk_as_a_named_1011(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other_ca = make_tls_files(tmp_path / "other").ca_file  # a CA that signed nothing here
    with token_server() as tokens:
        async with Emulator(ssl_context=tls_files.server_context()) as emulator:
            launch = vertex_launch("service_account", tokens, emulator, tls_files, tmp_path)
            metrics_port = free_port()  # plain HTTP, as the Kubernetes example scrapes it
            env = launch.env | {
                "RELAY_VERTEX_CA_FILE": str(other_ca),
                "RELAY_METRICS_PORT": str(metrics_port),
            }
            relay = RelayProcess(env, tmp_path / "relay.log", module=launch.module)
            try:
                with pytest.raises(errors.APIError) as raised:
                    async with sdk_client(relay, tls_files).aio.live.connect(
                        model=MODEL, config=TEXT_WITH_TOOLS
                    ):
                        pass
                samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            finally:
                relay.kill()
    assert raised.value.code == 1011
    assert "upstream unavailable: certificate verify failed" in str(raised.value)
    labels = {"cause": "tls_certificate", "status": "none"}
    assert value(samples, "relay_upstream_failures_total", **labels) == 1
    assert emulator.stats.setups == []


async def test_a_session_reaches_vertex_through_the_egress_proxy_over_verified_tls(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    """Egress through an HTTP CONNECT proxy (`HTTPS_PROXY`): TLS to the endpoint runs inside
    the tunnel, verified against its CA, and the session keeps the fast lane."""
    proxy = ConnectProxy()
    await proxy.start()
    try:
        with token_server() as tokens:
            async with Emulator(ssl_context=tls_files.server_context()) as emulator:
                endpoint = emulator.base_url.removeprefix("wss://")
                launch = vertex_launch("service_account", tokens, emulator, tls_files, tmp_path)
                env = launch.env | {"HTTPS_PROXY": proxy.url}
                relay = RelayProcess(env, tmp_path / "relay.log", module=launch.module)
                try:
                    client = sdk_client(relay, tls_files)
                    async with client.aio.live.connect(model=MODEL, config=AUDIO) as session:
                        audio, spoken = await audio_turn(session)
                    ended = relay.session_ended()
                finally:
                    relay.kill()
    finally:
        await proxy.stop()
    assert len(audio) > 24_000
    assert spoken
    assert proxy.tunnels == [endpoint]
    fast_in = ended["fast_frames_in"]
    assert isinstance(fast_in, int)
    assert fast_in > 0
