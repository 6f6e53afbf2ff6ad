"""JSON from peers, parsed with a bounded size and nesting depth.

`json.loads` recurses once per nesting level: a document nested a thousand levels deep raises
`RecursionError` (not `ValueError`) from deep inside the decoder, and a merely deep one builds
objects that later recursive code (`json.dumps`, policy merges) trips over. Every JSON the relay
receives from a client, an upstream or an identity provider goes through `loads` here, which
refuses such documents with `JsonRejected`, a `ValueError`, before a single object is built.

The depth check runs at C speed: strings are cut out with one regular expression, everything
but brackets is deleted with `bytes.translate`, and each pass of `replace(b"[]", b"")` removes
exactly one nesting level. A well-formed setup (depth ~10, a few thousand brackets) costs
microseconds; a hostile one costs at most `max_depth` passes over its brackets.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Protocol Buffers' JSON parser (what the Live API runs on) stops at 100 levels by default.
MAX_JSON_DEPTH = 100

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in _BRACKETS)
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


class JsonRejected(ValueError):
    """The document is too large, too deep or not JSON; the message says which."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed  # not JSON at all, rather than JSON over a bound


def nesting_depth_exceeds(document: bytes, max_depth: int) -> bool:
    """Whether `document` nests arrays/objects deeper than `max_depth` (strings ignored)."""
    brackets = _STRING.sub(b"", document).translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: not JSON, which json.loads will say
        brackets = shorter
    return bool(brackets)


def loads(
    document: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """`json.loads(document)` if it is at most `max_bytes` long (None: the caller bounded it
    already) and at most `max_depth` deep."""
    raw = document.encode() if isinstance(document, str) else document
    if max_bytes is not None and len(raw) > max_bytes:
        raise JsonRejected(f"JSON document of {len(raw)} bytes exceeds the limit of {max_bytes}")
    if nesting_depth_exceeds(raw, max_depth):
        raise JsonRejected(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces
        raise JsonRejected("not valid JSON", malformed=True) from exc
