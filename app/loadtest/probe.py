"""Audio probe frames: PCM chunks that carry their own sequence number and send time.

The emulator's load-test mode answers every `realtimeInput.audio` chunk with one audio chunk
holding the very same base64 string, and the relay forwards it untouched. So the first bytes
of each PCM chunk can carry (session, sequence number, send time) and the echo hands them back:
no table of frames in flight, and a frame that a proxy reordered or duplicated is still timed
correctly.

The header is 18 bytes, a multiple of 3, so its base64 (24 characters) can be concatenated
with the base64 of the rest of the chunk, which is encoded once in advance. Sending a frame
then costs one small encode and a few byte concatenations, keeping the load generator cheap.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import struct
from dataclasses import dataclass

PCM_RATE_HZ = 16_000
PCM_SAMPLE_BYTES = 2  # 16-bit little-endian mono

_HEADER = struct.Struct(">2sIIQ")  # magic, session index, sequence number, send time (ns)
_MAGIC = b"LR"
_HEADER_B64_LENGTH = 4 * _HEADER.size // 3

# Distinct chunks are cycled through so that no frame repeats one still inside the 32 KiB deflate
# window: repeated chunks would make permessage-deflate look unrealistically good.
_DISTINCT_AUDIO_BYTES = 2 * 32 * 1024

_AUDIO_PREFIX = b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
_AUDIO_SUFFIX = b'"}}}'
_DATA_MARKER = b'"data":"'

MIN_CHUNK_MS = 1
MAX_CHUNK_MS = 1000


@dataclass(frozen=True)
class Echo:
    """What an echoed probe frame tells: which session sent it, which frame, and when."""

    session: int
    sequence: int
    sent_ns: int


def chunk_bytes(chunk_ms: int) -> int:
    """Bytes of 16 kHz 16-bit mono PCM in `chunk_ms` milliseconds."""
    return PCM_RATE_HZ * PCM_SAMPLE_BYTES * chunk_ms // 1000


class AudioProbe:
    """Builds `realtimeInput.audio` frames of `chunk_ms` of speech-like PCM with a probe header."""

    def __init__(self, chunk_ms: int, *, seed: int = 7) -> None:
        if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
            raise ValueError(f"chunk_ms must be within {MIN_CHUNK_MS}..{MAX_CHUNK_MS}")
        self.chunk_ms = chunk_ms
        size = chunk_bytes(chunk_ms)
        distinct_chunks = max(3, -(-_DISTINCT_AUDIO_BYTES // size))
        pcm = _speech_like_pcm(size * distinct_chunks, seed)
        self._bodies_b64 = [
            base64.b64encode(pcm[start + _HEADER.size : start + size])
            for start in range(0, len(pcm), size)
        ]

    def frame(self, session: int, sequence: int, sent_ns: int) -> bytes:
        """The UTF-8 JSON text of one audio message stamped with the given identity and time."""
        header = base64.b64encode(_HEADER.pack(_MAGIC, session, sequence, sent_ns))
        body = self._bodies_b64[sequence % len(self._bodies_b64)]
        return b"".join((_AUDIO_PREFIX, header, body, _AUDIO_SUFFIX))


def read_echo(message: bytes) -> Echo | None:
    """The probe header of an echoed audio frame, or None when the message is not one.

    Sniffs bytes first (the relay and the emulator write `"data":"` without spaces); a message
    that mentions inline data but is laid out differently is parsed as JSON, so a proxy that
    re-serialises frames is still measured rather than silently counted as noise.
    """
    start = message.find(_DATA_MARKER)
    if start >= 0:
        start += len(_DATA_MARKER)
        return _decode_header(message[start : start + _HEADER_B64_LENGTH])
    if b"inlineData" not in message and b"inline_data" not in message:
        return None
    data = _inline_data(message)
    return None if data is None else _decode_header(data[:_HEADER_B64_LENGTH].encode())


def _decode_header(encoded: bytes) -> Echo | None:
    try:
        raw = binascii.a2b_base64(encoded)
    except binascii.Error:
        return None
    if len(raw) != _HEADER.size:
        return None
    magic, session, sequence, sent_ns = _HEADER.unpack(raw)
    if magic != _MAGIC:
        return None
    return Echo(session, sequence, sent_ns)


def _inline_data(message: bytes) -> str | None:
    """`serverContent.modelTurn.parts[0].inlineData.data` of a message, camelCase or snake_case."""
    try:
        document = json.loads(message)
        content = document.get("serverContent") or document.get("server_content")
        turn = content.get("modelTurn") or content.get("model_turn")
        part = turn["parts"][0]
        inline = part.get("inlineData") or part.get("inline_data")
        data = inline["data"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return data if isinstance(data, str) else None


def _speech_like_pcm(size: int, seed: int) -> bytes:
    """A voiced-sounding signal (harmonics under a syllable-rate envelope, plus noise).

    Pure silence or a pure tone would compress far better than speech does, which matters when
    the benchmark weighs permessage-deflate.
    """
    rng = random.Random(seed)  # noqa: S311 - noise in a test signal, not a secret
    samples = bytearray()
    for n in range(size // PCM_SAMPLE_BYTES):
        t = n / PCM_RATE_HZ
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 4 * t)
        voice = sum(math.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 6))
        value = 3000 * envelope * voice + rng.gauss(0, 400)
        samples += struct.pack("<h", max(-32768, min(32767, int(value))))
    samples += bytes(size - len(samples))
    return bytes(samples)
