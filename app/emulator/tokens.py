"""Deterministic token counting, reported in `usageMetadata` with Vertex field names.

Rules (documented in docs/emulator.md, "What it imitates"):
- text: one token per started group of 4 characters;
- audio: 25 tokens per second, in and out (rounded up per turn);
- video: 258 tokens per frame; with `generationConfig.mediaResolution`, what Vertex's
  `MediaResolution` reference says: LOW 64, MEDIUM and HIGH 256;
- a turn's prompt is the whole context: system instruction, every earlier turn's text (user
  and model), and the new input with the audio and video received since the previous turn;
- a function response the reply is made from is its tool-use prompt (Vertex's
  `toolUsePromptTokenCount`), counted as text of its compact JSON, apart from the prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

AUDIO_TOKENS_PER_SECOND = 25
VIDEO_TOKENS_PER_FRAME = 258
VIDEO_TOKENS_PER_FRAME_AT = {
    "MEDIA_RESOLUTION_LOW": 64,
    "MEDIA_RESOLUTION_MEDIUM": 256,
    "MEDIA_RESOLUTION_HIGH": 256,  # "zoomed reframing with 256 tokens"
}


def video_tokens_per_frame(media_resolution: str | None) -> int:
    """Tokens a video frame costs at `generationConfig.mediaResolution` (None: unset)."""
    return VIDEO_TOKENS_PER_FRAME_AT.get(str(media_resolution).upper(), VIDEO_TOKENS_PER_FRAME)


CHARS_PER_TEXT_TOKEN = 4


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN)


def audio_tokens(seconds: float) -> int:
    # Round to the microsecond first so that float noise never adds a token.
    return math.ceil(round(seconds * AUDIO_TOKENS_PER_SECOND, 6))


@dataclass(frozen=True)
class TokenCounts:
    text: int = 0
    audio: int = 0
    video: int = 0

    @property
    def total(self) -> int:
        return self.text + self.audio + self.video

    def details(self) -> list[dict[str, Any]]:
        counts = (("TEXT", self.text), ("AUDIO", self.audio), ("VIDEO", self.video))
        return [{"modality": name, "tokenCount": count} for name, count in counts if count]


NO_TOKENS = TokenCounts()


def usage_metadata(
    prompt: TokenCounts, candidates: TokenCounts, tool_use: TokenCounts = NO_TOKENS
) -> dict[str, Any]:
    # Vertex's total is prompt + candidates + tool-use prompt (+ thoughts, which we have none of).
    usage: dict[str, Any] = {
        "promptTokenCount": prompt.total,
        "candidatesTokenCount": candidates.total,
        "totalTokenCount": prompt.total + candidates.total + tool_use.total,
    }
    if prompt.details():
        usage["promptTokensDetails"] = prompt.details()
    if candidates.details():
        usage["candidatesTokensDetails"] = candidates.details()
    if tool_use.total:
        usage["toolUsePromptTokenCount"] = tool_use.total
        usage["toolUsePromptTokensDetails"] = tool_use.details()
    return usage
