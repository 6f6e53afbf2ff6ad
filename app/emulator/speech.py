"""The emulator's "voice": a steady tone per voice name, as 24 kHz 16-bit PCM.

A tone is enough for a client to play, measure and tell voices apart, and it is cheap and
deterministic: the pitch names the voice, the length follows the text.
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from functools import lru_cache

OUTPUT_SAMPLE_RATE = 24_000
OUTPUT_MIME_TYPE = f"audio/pcm;rate={OUTPUT_SAMPLE_RATE}"
DEFAULT_VOICE = "Puck"
_AMPLITUDE = 8_000

# Pitches of the voices every Live model offers; other names get one derived from the name.
VOICE_PITCH_HZ = {
    "Puck": 220,
    "Charon": 110,
    "Kore": 262,
    "Fenrir": 147,
    "Aoede": 330,
    "Leda": 294,
    "Orus": 165,
    "Zephyr": 392,
}


def voice_pitch_hz(voice: str) -> int:
    return VOICE_PITCH_HZ.get(voice, 120 + zlib.crc32(voice.encode()) % 300)


@lru_cache(maxsize=64)
def _one_second(pitch_hz: int) -> bytes:
    # A whole number of hertz repeats exactly every second, so one second tiles forever.
    samples = array(
        "h",
        (
            round(_AMPLITUDE * math.sin(2 * math.pi * pitch_hz * n / OUTPUT_SAMPLE_RATE))
            for n in range(OUTPUT_SAMPLE_RATE)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class Voice:
    """Renders consecutive stretches of one voice's tone without phase jumps."""

    def __init__(self, name: str) -> None:
        self.pitch_hz = voice_pitch_hz(name)
        self._next_sample = 0

    def render(self, seconds: float) -> bytes:
        tone = _one_second(self.pitch_hz)
        count = round(seconds * OUTPUT_SAMPLE_RATE)
        start = self._next_sample % OUTPUT_SAMPLE_RATE
        self._next_sample += count
        pieces = []
        while count > 0:
            take = min(count, OUTPUT_SAMPLE_RATE - start)
            pieces.append(tone[2 * start : 2 * (start + take)])
            count -= take
            start = 0
        return b"".join(pieces)
