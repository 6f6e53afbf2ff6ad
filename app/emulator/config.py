"""How an emulator instance behaves: protocol limits, reply pacing and injected faults.

Both classes are frozen: an emulator's behaviour is fixed when it is built, so a test that
wants another behaviour builds another emulator (they are cheap: one listening socket).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from app.protocol.models import CURRENT_MODELS, LIVE_3_8, OLDER_MODELS, TRANSCRIBE_MARK

DEFAULT_KNOWN_MODELS = (*CURRENT_MODELS, "gemini-live-2.5-flash-preview", *OLDER_MODELS)
# Native-audio models (by name) speak only, and call functions without blocking.
NATIVE_AUDIO_MARK = "native-audio"
# Models of the Gemini 3.8 Live generation are named so (the GA model and its variants).
LIVE_3_8_MARK = LIVE_3_8
# The hard close reported of gemini-3.8-live: 58 minutes after the upgrade, whatever the
# session does (discuss.ai.google.dev thread 186392).
DEADLINE_CLOSE_SECONDS = 58 * 60
# The prebuilt voices of Vertex's Live models (the Chirp 3 HD set).
VERTEX_VOICES = (
    "Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Aoede", "Autonoe", "Callirrhoe",
    "Charon", "Despina", "Enceladus", "Erinome", "Fenrir", "Gacrux", "Iapetus", "Kore",
    "Laomedeia", "Leda", "Orus", "Pulcherrima", "Puck", "Rasalgethi", "Sadachbia",
    "Sadaltager", "Schedar", "Sulafat", "Umbriel", "Vindemiatrix", "Zephyr", "Zubenelgenubi",
)  # fmt: skip


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
    # Projects the caller may use (the project in the setup's model path); None: any.
    known_projects: tuple[str, ...] | None = None
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
    # Session duration caps without contextWindowCompression (Vertex: 15 min once audio
    # came in, 2 min once video did; None: no cap), counted over the whole conversation
    # (across resumptions) or per connection. See app/emulator/caps.py.
    audio_session_cap_seconds: float | None = 15 * 60
    video_session_cap_seconds: float | None = 2 * 60
    session_cap_scope: Literal["conversation", "connection"] = "conversation"
    # Idle sessionResumptionUpdates (new input consumed while the model is silent) come at most
    # this often; updates at setup and at the end of a turn are not held back.
    resumption_update_interval_seconds: float = 0.5
    # EmulatorStats.consumed stops growing here, and at most this many handles are kept
    # (the oldest go first), so a long-running emulator stays bounded.
    max_consumed_records: int = 100_000
    max_handles: int = 10_000
    # Load-test mode: every audio chunk is answered at once by the very same base64 string.
    echo_audio: bool = False
    # Accept permessage-deflate when a client offers it. Whether the real service does is not
    # documented; off, as the relay's own default (RELAY_UPSTREAM_PERMESSAGE_DEFLATE).
    permessage_deflate: bool = False
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
    # --- what the service refuses and how models differ (see docs/emulator-fidelity.md) ---
    # Models that only speak: a setup asking them for TEXT closes 1007. None: every model
    # whose name says "native-audio".
    audio_only_models: tuple[str, ...] | None = None
    voices: tuple[str, ...] = VERTEX_VOICES
    # `realtimeInput.audioStreamEnd` is no field of Vertex's message (the SDK's Vertex
    # converter refuses it): "refuse" closes 1007 as the service does; "accept" ends the
    # current activity, as the Gemini API does.
    audio_stream_end: Literal["refuse", "accept"] = "refuse"
    # `FunctionResponse.scheduling`: the current SDK's Vertex converter passes it (honoured:
    # SILENT, WHEN_IDLE, INTERRUPT); Vertex used to refuse it (1007), which "refuse" imitates.
    function_response_scheduling: Literal["honour", "refuse"] = "honour"
    # Models whose function calls carry no `id` (and whose toolResponse may not name one), as
    # on Vertex until recently. By default every model sends ids.
    models_without_call_ids: tuple[str, ...] = ()
    # Models whose function calls do not block by default (Vertex: the native-audio models
    # call asynchronously); a declaration's `behavior` overrides the default either way.
    # None: every model whose name says "native-audio".
    non_blocking_function_models: tuple[str, ...] | None = None
    # --- the Gemini 3.8 Live generation (see docs/emulator-fidelity.md) ---
    # Models with proactive audio always on: `proactivity.proactiveAudio: false` closes 1007.
    # None: every model named "gemini-3.8-live...".
    proactive_audio_always_on_models: tuple[str, ...] | None = None
    # Models that refuse a `thinkingConfig` (1007): Vertex says gemini-3.8-live does not
    # support thinking settings; its extended-thinking variant does.
    models_without_thinking: tuple[str, ...] = (LIVE_3_8,)
    # Models on which `clientContent` with `turnComplete: true` interrupts the reply in
    # progress whatever `activityHandling` says, and content without it waits for more.
    # None: every model named "gemini-3.8-live...".
    turn_complete_interrupts_models: tuple[str, ...] | None = None
    # Transcription-only models: TEXT only, no tools; each user utterance comes back as an
    # `inputTranscription`, then `turnComplete`. None: every model named "...transcribe...".
    transcription_only_models: tuple[str, ...] | None = None
    # Models that send no `usageMetadata` at all (as reported of transcription models by
    # users of other gateways). By default every model reports usage.
    models_without_usage: tuple[str, ...] = ()
    # Vertex may send `usageMetadata` beside any message, not only the turn's last. True: a
    # turn's prompt usage comes beside its first reply chunk and the response's with
    # `turnComplete` (two reports that sum to the one the default sends with `turnComplete`),
    # so a test can see usage arrive while no turn ends.
    usage_mid_turn: bool = False
    # A search tool (googleSearch, ...) beside function declarations or retrieval in one setup:
    # Vertex refuses it (1007); "allow" accepts it.
    search_with_function_calling: Literal["refuse", "allow"] = "refuse"
    # The hard close reported after 58 minutes (1011 "Deadline expired before operation could
    # complete."), counted per connection from the upgrade as reported; None: none. Only
    # models in `deadline_close_models` (None: every model) have it.
    deadline_close_seconds: float | None = DEADLINE_CLOSE_SECONDS
    # From what the deadline counts: each connection's upgrade (as reported, on the Gemini
    # API, of one connection that lived 58 minutes), or the conversation's start across
    # resumptions (Vertex ends connections after ~10 minutes, so a per-connection deadline
    # never comes there), restarting after each deadline close.
    deadline_close_scope: Literal["connection", "conversation"] = "connection"
    deadline_close_models: tuple[str, ...] | None = None
    # Resuming a handle of a connection that ended at that deadline: reported to work on one
    # day and to fail with 1007 on another. "refuse" imitates the failure.
    resume_after_deadline: Literal["allow", "refuse"] = "allow"
    # Models with Live Avatar video output (`responseModalities: ["VIDEO"]`: audio, and MP4
    # chunks at 24 fps); others refuse VIDEO (1007). None: every model named "gemini-3.8-live...".
    video_output_models: tuple[str, ...] | None = None
    faults: Faults = field(default_factory=Faults)

    def audio_only(self, model: str) -> bool:
        if self.audio_only_models is None:
            return NATIVE_AUDIO_MARK in model
        return model in self.audio_only_models

    def calls_block_by_default(self, model: str) -> bool:
        if self.non_blocking_function_models is None:
            return NATIVE_AUDIO_MARK not in model and LIVE_3_8_MARK not in model
        return model not in self.non_blocking_function_models

    def proactive_audio_always_on(self, model: str) -> bool:
        return _named(model, self.proactive_audio_always_on_models, LIVE_3_8_MARK)

    def turn_complete_interrupts(self, model: str) -> bool:
        return _named(model, self.turn_complete_interrupts_models, LIVE_3_8_MARK)

    def transcription_only(self, model: str) -> bool:
        return _named(model, self.transcription_only_models, TRANSCRIBE_MARK)

    def video_output(self, model: str) -> bool:
        return _named(model, self.video_output_models, LIVE_3_8_MARK)

    def deadline_close(self, model: str) -> float | None:
        """When a connection to `model` is closed at the hard deadline (seconds), if ever."""
        models = self.deadline_close_models
        return self.deadline_close_seconds if models is None or model in models else None

    def __post_init__(self) -> None:
        if self.connection_lifetime_seconds <= 0:
            raise ValueError("connection_lifetime_seconds must be positive")
        if self.goaway_notice_seconds < 0:
            raise ValueError("goaway_notice_seconds must be zero or positive")
        if self.resumption_update_interval_seconds < 0:
            raise ValueError("resumption_update_interval_seconds must be zero or positive")
        if self.reply_chunk_chars < 1:
            raise ValueError("reply_chunk_chars must be at least 1")
        if self.deadline_close_seconds is not None and self.deadline_close_seconds <= 0:
            raise ValueError("deadline_close_seconds must be positive (or None: no deadline)")


def _named(model: str, models: tuple[str, ...] | None, mark: str) -> bool:
    """Whether `model` is in `models`, or (None) whether its name carries `mark`."""
    return mark in model if models is None else model in models
