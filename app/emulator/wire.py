"""The wire format as the service parses and writes it: proto-JSON in, camelCase JSON out.

The service accepts camelCase and snake_case field names at every depth and both base64
alphabets; it writes camelCase JSON as binary frames. Values of free-form `Struct` fields
(function arguments and responses, JSON schemas, property names) are user data and keep
their keys as sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from app.protocol.errors import ProtocolViolation

INVALID_ARGUMENT = "Request contains an invalid argument."

# Fields whose value is user data: copied verbatim, never renamed.
_OPAQUE_FIELDS = frozenset(
    {"args", "response", "parametersJsonSchema", "responseJsonSchema", "default", "example"}
)
# Fields whose value is a map: its keys are user data, its values are messages again.
_MAP_FIELDS = frozenset({"properties"})

_SNAKE_PART = re.compile(r"_([a-z0-9])")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def camel(name: str) -> str:
    return _SNAKE_PART.sub(lambda match: match.group(1).upper(), name)


def normalize(value: Any) -> Any:
    """A parsed message with every field name in camelCase, user data left as sent."""
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = camel(key)
            if name in _OPAQUE_FIELDS:
                result[name] = item
            elif name in _MAP_FIELDS and isinstance(item, dict):
                result[name] = {entry: normalize(schema) for entry, schema in item.items()}
            else:
                result[name] = normalize(item)
        return result
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value


def load_frame(frame: str | bytes) -> Any:
    try:
        return json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolViolation(1007, f"Invalid JSON payload received. {exc.args[0]}") from None


def interpret(message: Any) -> tuple[str, Any]:
    """The single top-level field of a parsed client frame and its normalized value."""
    if not isinstance(message, dict) or len(message) != 1:
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    [(key, value)] = message.items()
    return camel(key), normalize(value)


def decode_base64(data: object, field: str) -> bytes:
    """Bytes of a proto `bytes` field, standard or URL-safe alphabet, padding optional."""
    if not isinstance(data, str):
        raise ProtocolViolation(1007, f"Invalid value at '{field}' (TYPE_BYTES)")
    padded = data.translate(_URLSAFE_TO_STANDARD) + "=" * (-len(data) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise ProtocolViolation(
            1007, f"Invalid value at '{field}' (TYPE_BYTES), Base64 decoding failed"
        ) from None


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_server_message(message: dict[str, Any]) -> bytes:
    """A server message as the service sends it: compact UTF-8 JSON for a binary frame."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def duration_text(seconds: float) -> str:
    """A proto Duration in JSON: `50s`, `0.5s`."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
