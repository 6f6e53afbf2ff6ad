"""Shared helpers of the emulator tests: clients, signals and turn collection."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import google.oauth2.credentials
from google import genai
from google.genai import live, types
from websockets.asyncio.client import ClientConnection, connect

from app.emulator import Emulator, EmulatorConfig
from tests.support.tls import TLSFiles

MODEL = "gemini-live-2.5-flash"
VERTEX_MODEL = f"projects/p/locations/us-central1/publishers/google/models/{MODEL}"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
INPUT_RATE = 16_000
CHUNK_SECONDS = 0.02
TURN_TIMEOUT = 10.0


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


async def receive_turn(session: live.AsyncSession) -> list[types.LiveServerMessage]:
    """Every message up to and including the next turnComplete."""
    async with asyncio.timeout(TURN_TIMEOUT):
        return [message async for message in session.receive()]


async def receive_until(
    session: live.AsyncSession, field: str
) -> tuple[list[types.LiveServerMessage], types.LiveServerMessage]:
    """Messages before the first one that sets `field`, and that one."""
    seen: list[types.LiveServerMessage] = []
    async with asyncio.timeout(TURN_TIMEOUT):
        while True:
            async for message in session.receive():
                if getattr(message, field) is not None:
                    return seen, message
                seen.append(message)


def texts(messages: list[types.LiveServerMessage]) -> str:
    return "".join(message.text or "" for message in messages)


def server_flags(messages: list[types.LiveServerMessage]) -> list[str]:
    """The turn-state flags in order: interrupted, generation_complete, turn_complete."""
    flags = []
    for message in messages:
        content = message.server_content
        if content is None:
            continue
        for flag in ("interrupted", "generation_complete", "turn_complete"):
            if getattr(content, flag):
                flags.append(flag)
    return flags


def speech(seconds: float, pitch_hz: float = 180.0) -> bytes:
    """16 kHz 16-bit PCM that sounds like a voice to an energy detector: a tone whose
    loudness rises and falls four times a second, never down to silence."""
    samples = round(seconds * INPUT_RATE)
    return b"".join(
        struct.pack(
            "<h",
            round(
                7000
                * (0.6 + 0.4 * math.sin(2 * math.pi * 4 * n / INPUT_RATE))
                * math.sin(2 * math.pi * pitch_hz * n / INPUT_RATE)
            ),
        )
        for n in range(samples)
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * INPUT_RATE))


def pcm_chunks(pcm: bytes, seconds: float = CHUNK_SECONDS) -> list[bytes]:
    size = 2 * round(seconds * INPUT_RATE)
    return [pcm[start : start + size] for start in range(0, len(pcm), size)]


async def send_audio(session: live.AsyncSession, pcm: bytes) -> None:
    for chunk in pcm_chunks(pcm):
        await session.send_realtime_input(
            audio=types.Blob(data=chunk, mime_type=f"audio/pcm;rate={INPUT_RATE}")
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
