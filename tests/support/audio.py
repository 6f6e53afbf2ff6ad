"""Synthetic 16 kHz 16-bit mono PCM, as clients send it: speech-like tone and silence."""

from __future__ import annotations

import math
import struct

INPUT_RATE = 16_000
CHUNK_SECONDS = 0.02


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
