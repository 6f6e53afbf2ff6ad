"""Energy-based voice activity detection over 16-bit little-endian mono PCM; no I/O.

The detector cuts audio into 10 ms frames and calls a frame speech when its RMS level
passes a threshold. Speech lasting `prefix_padding_ms` starts an activity; silence lasting
`silence_duration_ms` ends it. The length of an activity is measured from its first to its
last speech frame, in audio time, so it does not depend on how fast audio arrives.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any

FRAME_MS = 10
DEFAULT_SILENCE_MS = 500
DEFAULT_PREFIX_PADDING_MS = 20
# RMS of a 16-bit frame that counts as speech (about -36 dBFS), by start sensitivity. Vertex
# documents UNSPECIFIED as LOW for both sensitivities (the Gemini API: HIGH).
SPEECH_RMS_THRESHOLD = {
    "START_SENSITIVITY_HIGH": 250,
    "START_SENSITIVITY_LOW": 1_000,
}
SPEECH_RMS_THRESHOLD["START_SENSITIVITY_UNSPECIFIED"] = SPEECH_RMS_THRESHOLD[
    "START_SENSITIVITY_LOW"
]
# Once speaking, a frame still counts as speech above this share of the start threshold: a LOW
# end sensitivity ends speech less often (quieter frames keep it going).
END_SENSITIVITY_SHARE = {"END_SENSITIVITY_HIGH": 1.0, "END_SENSITIVITY_LOW": 0.5}
END_SENSITIVITY_SHARE["END_SENSITIVITY_UNSPECIFIED"] = END_SENSITIVITY_SHARE["END_SENSITIVITY_LOW"]


@dataclass(frozen=True)
class VadSettings:
    enabled: bool = True
    silence_ms: int = DEFAULT_SILENCE_MS
    prefix_padding_ms: int = DEFAULT_PREFIX_PADDING_MS
    threshold_rms: int = SPEECH_RMS_THRESHOLD["START_SENSITIVITY_UNSPECIFIED"]
    # The level that keeps an activity going (speech already started).
    hold_rms: float = threshold_rms * END_SENSITIVITY_SHARE["END_SENSITIVITY_UNSPECIFIED"]

    @classmethod
    def from_setup(cls, detection: dict[str, Any]) -> VadSettings:
        """From `realtimeInputConfig.automaticActivityDetection` (normalized)."""
        start = detection.get("startOfSpeechSensitivity", "START_SENSITIVITY_UNSPECIFIED")
        end = detection.get("endOfSpeechSensitivity", "END_SENSITIVITY_UNSPECIFIED")
        threshold = SPEECH_RMS_THRESHOLD.get(
            start, SPEECH_RMS_THRESHOLD["START_SENSITIVITY_UNSPECIFIED"]
        )
        share = END_SENSITIVITY_SHARE.get(end, END_SENSITIVITY_SHARE["END_SENSITIVITY_UNSPECIFIED"])
        return cls(
            enabled=not detection.get("disabled", False),
            silence_ms=int(detection.get("silenceDurationMs", DEFAULT_SILENCE_MS)),
            prefix_padding_ms=int(detection.get("prefixPaddingMs", DEFAULT_PREFIX_PADDING_MS)),
            threshold_rms=threshold,
            hold_rms=threshold * share,
        )


@dataclass(frozen=True)
class ActivityStarted:
    pass


@dataclass(frozen=True)
class ActivityEnded:
    speech_seconds: float


VadEvent = ActivityStarted | ActivityEnded


def _frame_rms(samples: array[int]) -> float:
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples))


class VoiceActivityDetector:
    def __init__(self, settings: VadSettings) -> None:
        self._settings = settings
        self._pending = b""
        self._pending_rate = 0
        self._speaking = False
        self._speech_run_ms = 0  # speech heard while not yet speaking
        self._silence_run_ms = 0  # silence heard while speaking
        self._speech_ms = 0  # first to last speech frame of the current activity

    @property
    def settings(self) -> VadSettings:
        return self._settings

    @property
    def speaking(self) -> bool:
        return self._speaking

    def feed(self, pcm: bytes, sample_rate: int) -> list[VadEvent]:
        if sample_rate != self._pending_rate:
            self._pending, self._pending_rate = b"", sample_rate
        frame_bytes = 2 * sample_rate * FRAME_MS // 1000
        data = self._pending + pcm
        whole = len(data) - len(data) % frame_bytes
        self._pending = data[whole:]
        samples = array("h", data[:whole])
        if sys.byteorder == "big":
            samples.byteswap()
        step = frame_bytes // 2
        events: list[VadEvent] = []
        for offset in range(0, len(samples), step):
            rms = _frame_rms(samples[offset : offset + step])
            threshold = self._settings.hold_rms if self._speaking else self._settings.threshold_rms
            is_speech = rms >= threshold
            event = self._step(is_speech)
            if event is not None:
                events.append(event)
        return events

    def end_of_stream(self) -> ActivityEnded | None:
        """`audioStreamEnd`: the current activity, if any, ends now."""
        self._pending = b""
        self._speech_run_ms = 0
        return self._end() if self._speaking else None

    def _step(self, is_speech: bool) -> VadEvent | None:
        if not self._speaking:
            self._speech_run_ms = self._speech_run_ms + FRAME_MS if is_speech else 0
            if is_speech and self._speech_run_ms >= self._settings.prefix_padding_ms:
                self._speaking = True
                self._speech_ms = self._speech_run_ms
                self._silence_run_ms = self._speech_run_ms = 0
                return ActivityStarted()
            return None
        if is_speech:
            self._speech_ms += self._silence_run_ms + FRAME_MS
            self._silence_run_ms = 0
            return None
        self._silence_run_ms += FRAME_MS
        if self._silence_run_ms >= self._settings.silence_ms:
            return self._end()
        return None

    def _end(self) -> ActivityEnded:
        ended = ActivityEnded(self._speech_ms / 1000)
        self._speaking = False
        self._speech_ms = self._silence_run_ms = 0
        return ended
