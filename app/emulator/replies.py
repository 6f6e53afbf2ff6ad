"""What the emulated model says: deterministic text that shows what reached it.

A reply names its number in the conversation, quotes the user's input and the previous
user input, and quotes the system instruction, so a test can tell turns apart, see that
history survived a resumption, and see that setup reached the service.

Tool-call convention: a user turn whose text contains the name of a declared function (as
a whole word) calls it; the arguments are the first JSON object in the text, else `{}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

_QUOTE_LIMIT = 120
_NAME_EDGE = r"[\w.-]"


@dataclass(frozen=True)
class Entry:
    role: Literal["user", "model"]
    text: str


@dataclass(frozen=True)
class ToolTrigger:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


def quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _QUOTE_LIMIT:
        flat = flat[: _QUOTE_LIMIT - 3] + "..."
    return f'"{flat}"'


def spoken_input_text(speech_seconds: float, vocabulary: Sequence[str] = ()) -> str:
    """What the emulator "heard": the input transcription of an audio turn. A custom
    vocabulary shows in it, so that a test sees the terms reached the model."""
    heard = f"{speech_seconds:.2f} s of speech"
    if vocabulary:
        heard += f" with {', '.join(vocabulary)}"
    return f"[{heard}]"


def reply_text(number: int, user_text: str, history: Sequence[Entry], system: str) -> str:
    parts = [f"Reply {number}: you said {quote(user_text)}."]
    earlier = next((entry.text for entry in reversed(history) if entry.role == "user"), None)
    if earlier is not None:
        parts.append(f"Before that you said {quote(earlier)}.")
    if system:
        parts.append(f"Instructions: {quote(system)}.")
    return " ".join(parts)


def compact_json(value: object) -> str:
    """A function response as the model reads it (quoted in replies, counted as tool use)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def tool_reply_text(number: int, name: str, response: object) -> str:
    return f"Reply {number}: {name} returned {quote(compact_json(response))}."


def find_tool_call(text: str, function_names: Iterable[str]) -> ToolTrigger | None:
    earliest: tuple[int, str] | None = None
    for name in function_names:
        match = re.search(rf"(?<!{_NAME_EDGE}){re.escape(name)}(?!{_NAME_EDGE})", text)
        if match and (earliest is None or match.start() < earliest[0]):
            earliest = (match.start(), name)
    if earliest is None:
        return None
    return ToolTrigger(earliest[1], _first_json_object(text))


def _first_json_object(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return {}


def chunks(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]
