"""A client message read against `messages`: one spelling per field, or the service's refusal.

Proto-JSON takes a field under its camelCase or its snake_case name. `canonical` returns a copy
of a parsed message whose every field is named camelCase, at every depth the schema describes,
so that code comparing, locking or merging fields never sees the other spelling. What the
service refuses is refused here with its own words (1007):

    Invalid JSON payload received. Unknown name "scheduling" at
    'tool_response.function_responses[0]': Cannot find field.

A field given under both of its names is refused too: which of the two a parser keeps is not
something a policy may leave to chance. `null` means "not set" in proto-JSON and is dropped.
Values of free-form fields are user data and are copied by reference, untouched.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from app.protocol.errors import ProtocolViolation
from app.protocol.messages import CLIENT_MESSAGE, ENUMS, MESSAGES, SPELLINGS, snake

# Fields, by message name, to treat as unknown (what a model or configuration does not have).
Refused = Mapping[str, Collection[str]]
_NOTHING_REFUSED: Refused = {}

_TYPE_URL = "type.googleapis.com/google.cloud.aiplatform.v1beta1."
_SCALAR_KINDS = {
    "string": "TYPE_STRING",
    "bool": "TYPE_BOOL",
    "int": "TYPE_INT32",
    "number": "TYPE_FLOAT",
    "bytes": "TYPE_BYTES",
}

# A path is a tuple of camelCase field names and "[i]" indices, turned into the service's
# snake_case text only when a refusal needs it.
Path = tuple[str, ...]


def canonical(
    value: Any,
    message: str,
    *,
    path: Path = (),
    refused: Refused = _NOTHING_REFUSED,
    keep_unknown: bool = False,
) -> dict[str, Any]:
    """`value` (parsed JSON) as a `message` with camelCase field names, or ProtocolViolation.

    `keep_unknown` passes fields the schema does not know through as sent instead of refusing
    them (for operators who forward new Vertex fields before the schema learns them).
    """
    if not isinstance(value, dict):
        raise ProtocolViolation(1007, invalid_value(path, message, value))
    return _message(value, message, path, refused, keep_unknown)


def check_client_message(message: Any, refused: Refused = _NOTHING_REFUSED) -> None:
    """Raise the ProtocolViolation the service closes with, if `message` (parsed JSON, as the
    client sent it) is not a valid client message."""
    canonical(message, CLIENT_MESSAGE, refused=refused)


def client_message(message: Any, *, keep_unknown: bool = False) -> tuple[str, dict[str, Any]]:
    """The one top-level field of a client message (its camelCase name) and its canonical
    value. A message with none or several is refused: it is a oneof on the service."""
    fields = canonical(message, CLIENT_MESSAGE, keep_unknown=keep_unknown)
    if len(fields) != 1:
        named = ", ".join(fields) or "none"
        raise ProtocolViolation(
            1007, f"a client message holds exactly one message type; this one holds {named}"
        )
    [(kind, value)] = fields.items()
    return kind, value


def _message(
    value: dict[str, Any], name: str, path: Path, refused: Refused, keep_unknown: bool
) -> dict[str, Any]:
    fields = MESSAGES[name]
    spellings = SPELLINGS[name]
    refused_here = refused.get(name, ())
    result: dict[str, Any] = {}
    sent_as: dict[str, str] = {}
    for key, item in value.items():
        field = spellings.get(key)
        if field is None or field in refused_here:
            if keep_unknown and field is None:
                result[key] = item
                continue
            where = f" at '{path_text(path)}'" if path else ""
            raise ProtocolViolation(
                1007,
                f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.',
            )
        if field in sent_as:
            where = f"'{path_text(path)}'" if path else "the message"
            raise ProtocolViolation(
                1007, f'"{sent_as[field]}" and "{key}" at {where} name one field: send one'
            )
        sent_as[field] = key
        if item is not None:  # proto-JSON reads null as "not set"
            result[field] = _field(item, fields[field], (*path, field), refused, keep_unknown)
    return result


def _field(value: Any, kind: str, path: Path, refused: Refused, keep_unknown: bool) -> Any:
    if kind.startswith("[]"):
        if not isinstance(value, list):
            raise ProtocolViolation(1007, invalid_value(path, kind[2:], value))
        return [
            _single(item, kind[2:], (*path, f"[{index}]"), refused, keep_unknown)
            for index, item in enumerate(value)
        ]
    return _single(value, kind, path, refused, keep_unknown)


def _single(value: Any, kind: str, path: Path, refused: Refused, keep_unknown: bool) -> Any:
    if kind == "any":
        return value
    if kind in MESSAGES:
        if not isinstance(value, dict):
            raise ProtocolViolation(1007, invalid_value(path, kind, value))
        return _message(value, kind, path, refused, keep_unknown)
    if kind.startswith("enum:"):
        enum = kind[5:]
        if not (isinstance(value, str) and value.upper() in ENUMS[enum]) and not (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            raise ProtocolViolation(1007, invalid_value(path, enum, value))
    elif not _scalar_fits(value, kind):
        raise ProtocolViolation(1007, invalid_value(path, kind, value))
    return value


def _scalar_fits(value: Any, kind: str) -> bool:
    if kind in ("string", "bytes"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        # proto-JSON also takes integers as strings (int64 always travels so).
        if isinstance(value, str):
            return value.lstrip("-").isdigit()
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    raise AssertionError(f"unknown scalar kind {kind}")


def path_text(path: Path) -> str:
    """A field path as the service writes it: `tool_response.function_responses[0]`."""
    text = "".join(part if part.startswith("[") else f".{snake(part)}" for part in path)
    return text.lstrip(".")


def invalid_value(path: Path, kind: str, value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    type_name = _SCALAR_KINDS.get(kind) or f"{_TYPE_URL}{kind}"
    return f"Invalid value at '{path_text(path)}' ({type_name}), {shown}"
