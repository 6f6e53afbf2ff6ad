"""The Live models the relay and the emulator know by name, and what their names say.

Sources (docs/emulator-fidelity.md cites them row by row): Vertex's *Developer's guide to
Gemini 3.8 Live* (model ids `gemini-3.8-live` and its extended-thinking variant, GA), the
Gemini API's *Live transcription* page (`gemini-3.5-transcribe-live`), and Vertex's model
pages for the 2.5 and 2.0 generations, which Vertex still serves.
"""

from __future__ import annotations

LIVE_3_8 = "gemini-3.8-live"
LIVE_3_8_EXTENDED_THINKING = "gemini-3.8-live-extended-thinking"
TRANSCRIBE_LIVE = "gemini-3.5-transcribe-live"

# The current generation first, then the older models still served.
CURRENT_MODELS = (LIVE_3_8, LIVE_3_8_EXTENDED_THINKING, TRANSCRIBE_LIVE)
OLDER_MODELS = (
    "gemini-live-2.5-flash",
    "gemini-live-2.5-flash-native-audio",
    "gemini-live-2.5-flash-preview-native-audio-09-2025",
    "gemini-2.0-flash-live-preview-04-09",
    "gemini-2.0-flash-exp",
)

# Transcription-only models are named so: they answer in text (a setup must ask for TEXT:
# the SDKs' default, AUDIO, is refused), and say nothing of their own.
TRANSCRIBE_MARK = "transcribe"


def transcription_only(model: str) -> bool:
    """Whether `model` (a bare id) only transcribes, by its name."""
    return TRANSCRIBE_MARK in model
