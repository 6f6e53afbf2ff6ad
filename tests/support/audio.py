"""Synthetic 16 kHz speech-like PCM: a voiced tone with a syllable rhythm, then silence."""

from __future__ import annotations

import math
from array import array

SAMPLE_RATE = 16_000


def speech_like(seconds: float, pitch_hz: float = 180.0) -> bytes:
    samples = array("h")
    for n in range(int(seconds * SAMPLE_RATE)):
        t = n / SAMPLE_RATE
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4 * t)  # ~4 syllables a second
        value = envelope * (
            math.sin(2 * math.pi * pitch_hz * t) + 0.3 * math.sin(4 * math.pi * pitch_hz * t)
        )
        samples.append(int(9000 * value))
    return samples.tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * SAMPLE_RATE))


def chunks(pcm: bytes, milliseconds: int = 40) -> list[bytes]:
    size = 2 * SAMPLE_RATE * milliseconds // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
