"""Setup fields a project or a session token may lock, in one spelling, and how locks compare.

A lock is a part of a setup message. It is read into its canonical form (camelCase names, see
`app.protocol.canonical`) when it is configured or minted, and a client's message is read the
same way before it is compared: a lock written `max_output_tokens` and a client writing
`maxOutputTokens` name one field. Only fields that shape what the model does are lockable;
per-session fields such as `sessionResumption` are not.

Where the schema describes a field as a message (`generationConfig`), a lock holds field by
field: a lock on `generationConfig.responseModalities` leaves the rest of `generationConfig`
free. Any other value (a list such as `tools`, a scalar, a free-form object) is locked whole.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from app.protocol.canonical import canonical
from app.protocol.errors import ProtocolViolation
from app.protocol.messages import MESSAGES

SETUP = "BidiGenerateContentSetup"

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


def canonical_setup_fields(fields: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`fields` (a part of a setup message) with camelCase names, or ValueError saying why not:
    a name the Live API does not know, a value of the wrong type, one field named twice."""
    try:
        return canonical(dict(fields), SETUP)
    except ProtocolViolation as refused:
        raise ValueError(f"{what}: {refused.reason}") from None


def check_lockable(fields: Mapping[str, Any]) -> None:
    """ValueError naming the first field that cannot be locked, or a model that is not a name.
    `fields` are canonical."""
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


def _is_message(message: str, field: str) -> str | None:
    """The message type of `field` in `message`, when it is a single (not repeated) message."""
    kind = MESSAGES.get(message, {}).get(field)
    return kind if kind in MESSAGES else None


def first_conflict(
    locked: Mapping[str, Any], wanted: Mapping[str, Any], message: str = SETUP, path: str = ""
) -> str | None:
    """The dotted path of the first field where `wanted` sets a value other than `locked`'s
    (both canonical); a field `wanted` leaves out is no conflict. Models compare by bare name."""
    for name, value in wanted.items():
        if name not in locked:
            continue
        here = f"{path}.{name}" if path else name
        fixed = locked[name]
        inner = _is_message(message, name)
        if inner is not None and isinstance(fixed, Mapping) and isinstance(value, Mapping):
            conflict = first_conflict(fixed, value, inner, here)
            if conflict is not None:
                return conflict
        elif here == "model" and isinstance(fixed, str) and isinstance(value, str):
            if bare_model_name(fixed) != bare_model_name(value):
                return here
        elif fixed != value:
            return here
    return None


def first_departure(
    locked: Mapping[str, Any], replacement: Mapping[str, Any], message: str, path: str = ""
) -> str | None:
    """The dotted path of the first locked field that `replacement` would not keep as locked.

    For a message that replaces a whole field (a `contextUpdate`'s system instruction): unlike
    in a setup, a locked field it leaves out is not filled in but lost, so it departs too.
    """
    for name, fixed in locked.items():
        here = f"{path}.{name}" if path else name
        if name not in replacement:
            return here
        value = replacement[name]
        inner = _is_message(message, name)
        if inner is not None and isinstance(fixed, Mapping) and isinstance(value, Mapping):
            departure = first_departure(fixed, value, inner, here)
            if departure is not None:
                return departure
        elif fixed != value:
            return here
    return None


def merge_locked(
    setup: dict[str, Any],
    wanted: Mapping[str, Any],
    *,
    force: bool,
    message: str = SETUP,
    path: str = "",
) -> None:
    """Write `wanted` (canonical) into `setup` (canonical). A field the setup lacks is filled
    in; one it sets otherwise is overwritten when `force`, else ProtocolViolation(1008)."""
    for name, value in wanted.items():
        here = f"{path}.{name}" if path else name
        current = setup.get(name)
        inner = _is_message(message, name)
        if inner is not None and isinstance(value, Mapping) and isinstance(current, dict | None):
            merged: dict[str, Any] = current if current is not None else {}
            merge_locked(merged, value, force=force, message=inner, path=here)
            setup[name] = merged
            continue
        if not force and current is not None and current != value:
            raise ProtocolViolation(1008, f'setup field "{here}" is locked for this project')
        # A copy: the session's setup is its own to change, the lock is every session's.
        setup[name] = copy.deepcopy(value)
