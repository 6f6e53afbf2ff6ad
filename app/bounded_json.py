"""JSON from peers, parsed with a bounded size and nesting depth.

`json.loads` recurses once per nesting level: a document nested a thousand levels deep raises
`RecursionError` (not `ValueError`) from deep inside the decoder, and a merely deep one builds
objects that later recursive code (`json.dumps`, policy merges) trips over. Every JSON the relay
receives from a client, an upstream or an identity provider goes through `loads` here, which
refuses such documents with `JsonRejected`, a `ValueError`, before a single object is built.

The depth check runs at C speed: strings are cut out with one regular expression, everything
but brackets is deleted and the rest turned into +1/-1 steps with one `bytes.translate`, and
the deepest point is the maximum of their running sum (`itertools.accumulate`). A real setup
costs about a millisecond per 100 KB; a megabyte of nothing but brackets, tens of ms.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

# Protocol Buffers' JSON parser (what the Live API runs on) stops at 100 levels by default.
MAX_JSON_DEPTH = 100

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in _BRACKETS)
# An opening bracket becomes the signed byte +1, a closing one -1: the running sum is the depth.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class JsonRejected(ValueError):
    """The document is too large, too deep or not JSON; the message says which."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed  # not JSON at all, rather than JSON over a bound


def nesting_depth_exceeds(document: bytes, max_depth: int) -> bool:
    """Whether `document` nests arrays/objects deeper than `max_depth` (strings ignored)."""
    brackets = _STRING.sub(b"", document).translate(_STEPS, _NOT_BRACKETS)
    if brackets.count(1) <= max_depth:
        return False  # too few openings to go that deep (most documents stop here)
    return max(accumulate(array("b", brackets))) > max_depth


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
