"""Setup fields a project or a session token may lock, and how two locks are compared.

Names are camelCase, as in the Live API setup message. Only fields that shape what the model
does are lockable; per-session fields such as `sessionResumption` are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LOCKABLE_SETUP_FIELDS = frozenset(
    {
        "model",
        "generationConfig",
        "systemInstruction",
        "tools",
        "realtimeInputConfig",
        "inputAudioTranscription",
        "outputAudioTranscription",
        "contextWindowCompression",
        "proactivity",
    }
)


def check_lockable(fields: Mapping[str, Any]) -> None:
    """ValueError naming the first field that cannot be locked, or a model that is not a name."""
    for name in fields:
        if name not in LOCKABLE_SETUP_FIELDS:
            allowed = ", ".join(sorted(LOCKABLE_SETUP_FIELDS))
            raise ValueError(f'setup field "{name}" cannot be locked (lockable: {allowed})')
    model = fields.get("model")
    if model is not None and (not isinstance(model, str) or not bare_model_name(model)):
        raise ValueError('locked "model" must be a model name such as "gemini-live-2.5-flash"')


def check_defaultable(fields: Mapping[str, Any]) -> None:
    """ValueError naming the first field a project may not fill in by default.

    Defaults are the lockable fields but the model: a session without a model is refused,
    never given one.
    """
    for name in fields:
        if name == "model" or name not in LOCKABLE_SETUP_FIELDS:
            allowed = ", ".join(sorted(LOCKABLE_SETUP_FIELDS - {"model"}))
            raise ValueError(f'setup field "{name}" cannot have a default (allowed: {allowed})')


def bare_model_name(name: str) -> str:
    """`M` from `M`, `models/M`, `publishers/google/models/M` or a full resource path."""
    return name.strip().rsplit("/", 1)[-1]


def first_conflict(
    locked: Mapping[str, Any], wanted: Mapping[str, Any], path: str = ""
) -> str | None:
    """The dotted path of the first field where `wanted` sets a value other than `locked`'s.

    Objects are compared field by field (a lock on `generationConfig.responseModalities` leaves
    the rest of `generationConfig` free); anything else must be equal. Models are compared by
    bare name.
    """
    for name, value in wanted.items():
        here = f"{path}.{name}" if path else name
        if name not in locked:
            continue
        fixed = locked[name]
        if isinstance(fixed, Mapping) and isinstance(value, Mapping):
            conflict = first_conflict(fixed, value, here)
            if conflict is not None:
                return conflict
        elif here == "model" and isinstance(fixed, str) and isinstance(value, str):
            if bare_model_name(fixed) != bare_model_name(value):
                return here
        elif fixed != value:
            return here
    return None
