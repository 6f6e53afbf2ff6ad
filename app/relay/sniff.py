"""Byte sniffing for server frames: decide cheaply whether a frame must be understood at all.

Audio frames are most of the traffic and need nothing but forwarding. The messages the relay
acts on are small top-level keys; a substring search (memchr-fast) rules a frame out before any
JSON is parsed. Base64 never contains a quote, so a quoted key cannot hide inside audio data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app import bounded_json

USAGE_KEY = b'"usageMetadata"'
TURN_COMPLETE_KEY = b'"turnComplete"'
GOAWAY_KEY = b'"goAway"'
SETUP_COMPLETE_KEY = b'"setupComplete"'


@dataclass(frozen=True)
class Usage:
    prompt: int
    response: int
    total: int
    # The whole usageMetadata object: the ledger reads its kinds and modalities (app/ledger).
    report: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def read_usage(frame: bytes) -> Usage | None:
    """Token counts of a frame that carries `usageMetadata` (Vertex or Developer API names)."""
    try:
        message = bounded_json.loads(frame)
    except bounded_json.JsonRejected:
        return None
    usage = message.get("usageMetadata") if isinstance(message, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _as_int(usage.get("promptTokenCount"))
    response = _as_int(usage.get("candidatesTokenCount", usage.get("responseTokenCount")))
    total = _as_int(usage.get("totalTokenCount")) or prompt + response
    return Usage(prompt=prompt, response=response, total=total, report=usage)
