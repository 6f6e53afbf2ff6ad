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
    # The faults above apply only to the first N connections the emulator accepts (None: to
    # all), so a test can drop one connection mid-turn and watch the client resume on the next.
    fault_connections: int | None = None
    # Hold back setupComplete this long on every connection that resumes a handle (whatever
    # `fault_connections` says): a client's resumption is slow while a fresh start is not.
    resume_setup_delay_seconds: float = 0

    def apply_to(self, connection_number: int) -> bool:
        """Whether the faults apply to the emulator's `connection_number`-th connection (from 1)."""
        return self.fault_connections is None or connection_number <= self.fault_connections

    @property
    def holds_pongs(self) -> bool:
        return self.never_pong or self.pong_delay_seconds is not None


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator instance needs; the defaults imitate the real service."""

    known_models: tuple[str, ...] = DEFAULT_KNOWN_MODELS
    # A token string or a predicate on the bearer token; None: no check.
    require_token: str | Callable[[str], bool] | None = None
    # How a bad token is refused: a 1008 close after the upgrade, or HTTP 401 at the upgrade.
    auth_failure: Literal["close", "reject"] = "close"
    # Each connection ends after this long (close 1000 "The operation was cancelled."), with a
    # goAway this long before; "50s" is the `timeLeft` observed from Vertex.
    connection_lifetime_seconds: float = 600
    goaway_notice_seconds: float = 50
    handle_ttl_seconds: float = 7200
    # Resuming a handle while the connection that issued it is still open: "allow" lets both
    # run; "refuse" closes the new one 1011, as reported of the real service.
    resume_while_open: Literal["allow", "refuse"] = "allow"
    # How `lastConsumedClientMessageIndex` counts client messages (an assumption: Vertex does
    # not document it). "per_connection": setup is 0 on every connection, the next message 1.
    # "per_session": numbers run on across resumptions; a resuming setup takes none.
    consumed_index_counting: Literal["per_connection", "per_session"] = "per_connection"
    # Idle sessionResumptionUpdates (new input consumed while the model is silent) come at most
    # this often; updates at setup and at the end of a turn are not held back.
    resumption_update_interval_seconds: float = 0.5
    # EmulatorStats.consumed stops growing here, so a long-running emulator stays bounded.
    max_consumed_records: int = 100_000
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
        if self.resumption_update_interval_seconds < 0:
            raise ValueError("resumption_update_interval_seconds must be zero or positive")
        if self.reply_chunk_chars < 1:
            raise ValueError("reply_chunk_chars must be at least 1")
