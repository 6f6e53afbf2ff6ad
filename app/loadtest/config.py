"""What a load test does: where it connects, how many sessions, for how long, sending what."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.loadtest.probe import MAX_CHUNK_MS, MIN_CHUNK_MS

# The model a load test asks for unless told: a relay takes the bare name (and refuses a path
# that names a project other than its own); the emulator hit directly wants a Vertex path.
DEFAULT_MODEL = "gemini-live-2.5-flash"
VERTEX_PATH_MARKER = "/google.cloud.aiplatform."


def default_model(url: str) -> str:
    """`DEFAULT_MODEL` as the endpoint at `url` wants it named."""
    if VERTEX_PATH_MARKER in url:
        return f"projects/loadtest/locations/us-central1/publishers/google/models/{DEFAULT_MODEL}"
    return DEFAULT_MODEL


@dataclass(frozen=True)
class LoadConfig:
    """One load test. Every duration is bounded, so a run always ends by itself."""

    url: str
    model: str = ""
    """The model sent in setup, as given; empty: `default_model(url)`."""
    sessions: int = 1
    duration_seconds: float = 10.0
    ramp_up_seconds: float = 1.0
    chunk_ms: int = 40
    text_only: bool = False
    turn_interval_seconds: float = 2.0
    api_key: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    compression: bool = False
    resumption: bool = False
    """Ask for session resumption in the setup, as a long-lived SDK session does."""
    open_timeout_seconds: float = 10.0
    drain_seconds: float = 2.0
    progress_interval_seconds: float = 1.0
    storm_sessions: int = 0
    """Sessions opened all at once, while the others stream, `storm_at_seconds` into the window."""
    storm_at_seconds: float | None = None
    """When the storm starts, counted from the window's start; None: a third of the way in."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss://, got {self.url!r}")
        if not self.model:
            object.__setattr__(self, "model", default_model(self.url))
        if self.ca_file is not None and not self.url.startswith("wss://"):
            raise ValueError("a CA file only makes sense with a wss:// url")
        if not 1 <= self.sessions <= 10_000:
            raise ValueError("sessions must be within 1..10000")
        if not 0 < self.duration_seconds <= 3600:
            raise ValueError("duration must be within (0, 3600] seconds")
        if not 0 <= self.ramp_up_seconds <= 600:
            raise ValueError("ramp-up must be within [0, 600] seconds")
        if not MIN_CHUNK_MS <= self.chunk_ms <= MAX_CHUNK_MS:
            raise ValueError(f"chunk length must be within {MIN_CHUNK_MS}..{MAX_CHUNK_MS} ms")
        for name in ("turn_interval_seconds", "open_timeout_seconds", "progress_interval_seconds"):
            if not 0 < getattr(self, name) <= 600:
                raise ValueError(f"{name} must be within (0, 600]")
        if not 0 <= self.drain_seconds <= 600:
            raise ValueError("drain_seconds must be within [0, 600]")
        if not 0 <= self.storm_sessions <= 10_000:
            raise ValueError("storm sessions must be within 0..10000")
        if self.storm_at_seconds is not None and not (
            0 <= self.storm_at_seconds < self.duration_seconds
        ):
            raise ValueError("the storm must start within the window: 0 <= storm-at < duration")

    @property
    def storm_delay_seconds(self) -> float:
        """Seconds from the window's start to the storm's (the streaming p99 before it is the
        baseline its added p99 is measured against)."""
        if self.storm_at_seconds is not None:
            return self.storm_at_seconds
        return self.duration_seconds / 3

    @property
    def interval_seconds(self) -> float:
        """Time between two frames (audio chunks or text turns) of one session."""
        return self.turn_interval_seconds if self.text_only else self.chunk_ms / 1000

    @property
    def deadline_seconds(self) -> float:
        """The longest a run can take: ramp-up, opening, measuring, draining, closing."""
        return (
            self.ramp_up_seconds
            + self.open_timeout_seconds
            + self.duration_seconds
            + self.interval_seconds
            + self.drain_seconds
            + self.open_timeout_seconds  # closing handshakes
            + (self.open_timeout_seconds if self.storm_sessions else 0)  # the storm's opening
        )
