"""Shared helpers of the emulator tests: clients, signals and turn collection."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import types
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from tests.support.sdk import TURN_TIMEOUT
from tests.support.tls import TLSFiles

MODEL = "gemini-live-2.5-flash"
VERTEX_MODEL = f"projects/p/locations/us-central1/publishers/google/models/{MODEL}"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
TEXT: dict[str, Any] = {"generationConfig": {"responseModalities": ["TEXT"]}}


@asynccontextmanager
async def tls_emulator(
    tls_files: TLSFiles, config: EmulatorConfig | None = None
) -> AsyncIterator[Emulator]:
    async with Emulator(config, ssl_context=tls_files.server_context()) as emulator:
        yield emulator


def sdk_client(emulator: Emulator, tls_files: TLSFiles, token: str = "t") -> genai.Client:
    """google-genai in Vertex mode, pointed at the emulator over wss://."""
    return genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token=token),  # type: ignore[no-untyped-call]
        http_options={
            "base_url": emulator.base_url,
            "async_client_args": {"ssl": tls_files.client_context()},
        },
    )


def dominant_pitch_hz(pcm: bytes, rate: int = 24_000) -> float:
    """Zero crossings of a pure tone, per second, halved."""
    samples = [value for (value,) in struct.iter_unpack("<h", pcm)]
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


# --- raw websockets ------------------------------------------------------------------------


@asynccontextmanager
async def raw_connection(
    emulator: Emulator, path: str = VERTEX_PATH, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    async with connect(f"{emulator.base_url}{path}", additional_headers=headers) as ws:
        yield ws


def raw_setup(**fields: Any) -> str:
    return json.dumps({"setup": {"model": VERTEX_MODEL, **fields}})


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    """The next server message, checked to be what the service sends: binary JSON."""
    async with asyncio.timeout(TURN_TIMEOUT):
        frame = await ws.recv()
    assert isinstance(frame, bytes), "the service sends binary frames"
    assert len(frame) < 1024 * 1024, "websockets clients refuse frames over 1 MiB by default"
    message: dict[str, Any] = json.loads(frame)
    return message


def setup_complete_session_id(message: dict[str, Any]) -> str:
    """The `sessionId` of a `setupComplete`, checked to be all it carries and a UUID."""
    assert list(message) == ["setupComplete"], message
    assert list(message["setupComplete"]) == ["sessionId"], message
    session_id: str = message["setupComplete"]["sessionId"]
    assert str(uuid.UUID(session_id)) == session_id
    return session_id


async def recv_setup_complete(ws: ClientConnection) -> str:
    """Read the `setupComplete` that must come next; its `sessionId`."""
    return setup_complete_session_id(await recv_json(ws))


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server's close; the code and reason it sent."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TURN_TIMEOUT):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


async def until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the connection."""
    messages = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(TURN_TIMEOUT):
            while True:
                messages.append(json.loads(await ws.recv()))
    return messages


async def recv_raw_turn(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await recv_json(ws)
        messages.append(message)
        if message.get("serverContent", {}).get("turnComplete"):
            return messages


def urlsafe_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def input_transcripts(messages: list[types.LiveServerMessage]) -> list[str]:
    return [
        m.server_content.input_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.input_transcription
    ]


def output_transcript(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.output_transcription.text or ""
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )


def audio_blobs(messages: list[types.LiveServerMessage]) -> list[types.Blob]:
    return [
        part.inline_data
        for m in messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts or []
        if part.inline_data
    ]


def raw_reply_text(turn: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for message in turn
        for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
