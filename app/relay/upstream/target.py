"""Where the relay's models live upstream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UpstreamTarget:
    """Where models live upstream: `projects/{project}/locations/{location}`."""

    project: str
    location: str

    def model_path(self, model: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/publishers/google/models/{model}"
