"""How an emulator instance behaves: protocol limits, reply pacing and injected faults.

Both classes are frozen: an emulator's behaviour is fixed when it is built, so a test that
wants another behaviour builds another emulator (they are cheap: one listening socket).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_KNOWN_MODELS = (
    "gemini-live-2.5-flash",
    "gemini-live-2.5-flash-native-audio",
    "gemini-live-2.5-flash-preview-native-audio-09-2025",
    "gemini-live-2.5-flash-preview",
    "gemini-2.0-flash-live-preview-04-09",
    "gemini-2.0-flash-exp",
)


@dataclass(frozen=True)
class Faults:
    """Failures to inject, for tests of whatever sits in front of the emulator.

    Frame counts are frames *received from the client*, the setup frame included, so a test
    decides exactly when the fault fires by what it sends (0: right after the handshake).
    The frame that reaches the count is not processed.
    """

    close_after_frames: int | None = None
    close_code: int = 1011
    close_reason: str = "Internal error encountered."
    setup_delay_seconds: float = 0
    pong_delay_seconds: float | None = None
    never_pong: bool = False
    drop_after_frames: int | None = None

    @property
    def holds_pongs(self) -> bool:
        return self.never_pong or self.pong_delay_seconds is not None


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator instance needs; the defaults imitate the real service."""

    known_models: tuple[str, ...] = DEFAULT_KNOWN_MODELS
    # Projects the caller may use (the project in the setup's model path); None: any.
    known_projects: tuple[str, ...] | None = None
    # A token string or a predicate on the bearer token; None: no check.
    require_token: str | Callable[[str], bool] | None = None
    # How a bad token is refused: a 1008 close after the upgrade, or HTTP 401 at the upgrade.
    auth_failure: Literal["close", "reject"] = "close"
    connection_lifetime_seconds: float = 600
    goaway_notice_seconds: float = 60
    handle_ttl_seconds: float = 7200
    # Load-test mode: every audio chunk is answered at once by the very same base64 string.
    echo_audio: bool = False
    # The behaviour reported for the real service: realtime input while a tool call is
    # unanswered ends the session (1008). Off by default: interrupting a pending call with
    # speech or text then cancels it (toolCallCancellation), as the API reference describes.
    close_on_input_during_tool_call: bool = False
    # Reply pacing. The defaults stream a text turn in a few tens of milliseconds; tests of
    # interruption slow them down so that a reply is still running when the user speaks.
    reply_delay_seconds: float = 0
    reply_chunk_interval_seconds: float = 0.005
    reply_chunk_chars: int = 16
    speech_seconds_per_char: float = 0.05
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.connection_lifetime_seconds <= 0:
            raise ValueError("connection_lifetime_seconds must be positive")
        if self.goaway_notice_seconds < 0:
            raise ValueError("goaway_notice_seconds must be zero or positive")
        if self.reply_chunk_chars < 1:
            raise ValueError("reply_chunk_chars must be at least 1")
