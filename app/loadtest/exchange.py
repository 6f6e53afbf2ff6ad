"""What one simulated session sends, and how it recognises the answer to what it sent.

Two exchanges: voice (an audio chunk per tick, answered by its echo) and text-only (a text turn
per tick, answered by the `turnComplete` that ends the model's reply).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from app.emulator.setup import ECHO_AUDIO_INSTRUCTION
from app.loadtest.config import LoadConfig
from app.loadtest.probe import AudioProbe, read_echo


class CrossTalkError(Exception):
    """A session received the answer to a frame another session sent: a proxy mixed them up."""


class Exchange(Protocol):
    def setup_frame(self) -> bytes:
        """The first message of the session."""

    def next_frame(self, sent_ns: int) -> bytes | None:
        """The frame for this tick, or None when the session must skip it."""

    def answered(self, message: bytes) -> int | None:
        """The send time of the frame `message` answers, or None when it answers none."""


def exchange_for(config: LoadConfig, probe: AudioProbe | None, session: int) -> Exchange:
    """Session `session`'s exchange: stamped audio with `probe`, text turns without."""
    # A long-lived SDK session asks for resumption: the endpoint then sends handle updates.
    fields: dict[str, object] = {"sessionResumption": {}} if config.resumption else {}
    if probe is None:
        return TextExchange(session, config.model, fields)
    return AudioExchange(probe, session, config.model, fields)


def _setup(model: str, modality: str, fields: Mapping[str, object]) -> bytes:
    generation = {"generationConfig": {"responseModalities": [modality]}}
    setup = {"setup": {"model": model, **generation, **fields}}
    return json.dumps(setup, separators=(",", ":")).encode()


class AudioExchange:
    """Sends a stamped audio chunk per tick; the echo of a chunk answers it."""

    def __init__(
        self, probe: AudioProbe, session: int, model: str, fields: Mapping[str, object]
    ) -> None:
        self._probe = probe
        self._session = session
        self._model = model
        self._fields = fields  # more setup fields
        self._sequence = 0

    def setup_frame(self) -> bytes:
        # Asks any emulator for its load-test mode (app.emulator.setup.ECHO_AUDIO_INSTRUCTION).
        instruction = {"parts": [{"text": ECHO_AUDIO_INSTRUCTION}]}
        return _setup(self._model, "AUDIO", {"systemInstruction": instruction, **self._fields})

    def next_frame(self, sent_ns: int) -> bytes:
        frame = self._probe.frame(self._session, self._sequence, sent_ns)
        self._sequence += 1
        return frame

    def answered(self, message: bytes) -> int | None:
        echo = read_echo(message)
        if echo is None:
            return None
        if echo.session != self._session:
            raise CrossTalkError(f"session {self._session} got frame of session {echo.session}")
        return echo.sent_ns


class TextExchange:
    """Sends a text turn per tick while no turn is running; `turnComplete` answers it."""

    def __init__(self, session: int, model: str, fields: Mapping[str, object]) -> None:
        self._session = session
        self._model = model
        self._fields = fields  # more setup fields
        self._turns = 0
        self._pending_since_ns: int | None = None

    def setup_frame(self) -> bytes:
        return _setup(self._model, "TEXT", self._fields)

    def next_frame(self, sent_ns: int) -> bytes | None:
        if self._pending_since_ns is not None:
            return None  # one turn at a time, as a person typing would
        self._pending_since_ns = sent_ns
        self._turns += 1
        text = f"Load test session {self._session}, turn {self._turns}: say hello."
        content = {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}
        return json.dumps({"clientContent": content}, separators=(",", ":")).encode()

    def answered(self, message: bytes) -> int | None:
        # A quoted key cannot occur unescaped inside model text, so the sniff is exact.
        if self._pending_since_ns is None or b'"turnComplete"' not in message:
            return None
        sent_ns, self._pending_since_ns = self._pending_since_ns, None
        return sent_ns
