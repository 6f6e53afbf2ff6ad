"""Helpers for tests that talk to a Live endpoint through the google-genai SDK."""

from __future__ import annotations

import asyncio

from google.genai import live, types

from tests.support.audio import INPUT_RATE, pcm_chunks

TURN_TIMEOUT = 10.0


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


async def send_audio(session: live.AsyncSession, pcm: bytes) -> None:
    for chunk in pcm_chunks(pcm):
        await session.send_realtime_input(
            audio=types.Blob(data=chunk, mime_type=f"audio/pcm;rate={INPUT_RATE}")
        )
