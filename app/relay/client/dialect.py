"""The Gemini API dialect of the Live protocol, translated to and from Vertex AI's.

The official `@google/genai` SDK in Gemini API mode (how browser apps use ephemeral tokens)
speaks to `generativelanguage.googleapis.com`; the relay's upstream is Vertex AI. The two
dialects share almost every message. What differs, checked against the SDK's own converters
(`liveConnectParametersToMldev` / `...ToVertex`, `liveServerMessageFromVertex`,
`usageMetadataFromVertex` and `Session.tLiveClienttToolResponse` in @google/genai 2.32.0's web
build; `google/genai/_live_converters.py` in the Python SDK says the same):

client -> upstream, the setup only:
- `setup.model` is `models/M` (`tunedModels/T` exists only on the Gemini API: refused), and a
  few models have other ids on Vertex (`MODEL_ALIASES`).
- with no `generationConfig.responseModalities` the Gemini API answers in audio, Vertex does
  not: the SDK adds `["AUDIO"]` only in Vertex mode, so the relay adds it here.
- `generationConfig.modelSelectionConfig` is `modelConfig` on Vertex.
- fields Vertex does not have (`GEMINI_ONLY_FIELDS`) are refused, naming the field: dropping
  them would silently change what the model does.

client -> upstream, later frames:
- `realtimeInput.audioStreamEnd` exists only in the Gemini API: the relay leaves it out.

upstream -> client:
- usage: `candidatesTokenCount` / `candidatesTokensDetails` are `responseTokenCount` /
  `responseTokensDetails` in the Gemini API.
- tool calls: the Gemini-mode SDK refuses to send a `toolResponse` without `functionCalls[].id`.
  Vertex has historically sent none: the relay gives such calls ids, takes them off again on the
  matching `toolResponse`, and puts them on `toolCallCancellation` for the calls it cancels.

Everything else (audio, text, transcriptions, goAway, resumption updates, and the resumption
fields of the setup, which the Gemini-mode SDK sends in Vertex's shape) passes untouched. A frame
is parsed only when a substring search finds a key that needs translating, as in `sniff.py`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from websockets.typing import Data

from app import bounded_json
from app.protocol.errors import ProtocolViolation
from app.relay.client.setup_policy import AcceptedSetup, parse_setup_frame
from app.relay.closes import POLICY_VIOLATION
from app.relay.fast_lane import Lane, LaneOver, lane_of
from app.relay.upstream.upstream_leg import UpstreamLeg

# What a client speaks, chosen once per session by the path it connected to.
Dialect = Literal["vertex", "gemini"]

# Gemini API model id -> Vertex AI model id, where they differ for the same Live model. The
# Gemini 3.8 Live generation (gemini-3.8-live, gemini-3.8-live-extended-thinking,
# gemini-3.5-transcribe-live) has the same ids on both (Vertex's 3.8 guide, the Gemini API's
# model pages), so it needs no entry: any other id passes unchanged.
MODEL_ALIASES: Mapping[str, str] = {
    "gemini-2.0-flash-live-001": "gemini-2.0-flash-live-preview-04-09",
    "gemini-2.5-flash-native-audio-preview-09-2025": (
        "gemini-live-2.5-flash-preview-native-audio-09-2025"
    ),
}

# Setup paths (camelCase; `[]` steps into every list item) that only the Gemini API accepts.
GEMINI_ONLY_FIELDS: tuple[tuple[str, ...], ...] = (
    ("generationConfig", "enableEnhancedCivicAnswers"),
    ("generationConfig", "speechConfig", "voiceConfig", "replicatedVoiceConfig", "consentAudio"),
    (
        "generationConfig",
        "speechConfig",
        "voiceConfig",
        "replicatedVoiceConfig",
        "voiceConsentSignature",
    ),
    ("tools", "[]", "fileSearch"),
    ("tools", "[]", "mcpServers", "[]", "name"),
    ("tools", "[]", "mcpServers", "[]", "streamableHttpTransport"),
    ("systemInstruction", "parts", "[]", "toolCall"),
    ("systemInstruction", "parts", "[]", "toolResponse"),
    ("systemInstruction", "parts", "[]", "partMetadata"),
)

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")
_USAGE_KEY = "usageMetadata"
_SERVER_KEYS = ('"usageMetadata"', '"toolCall"', '"toolCallCancellation"')
_SERVER_KEYS_BYTES = tuple(key.encode() for key in _SERVER_KEYS)
_USAGE_RENAMES = {
    "candidatesTokenCount": "responseTokenCount",
    "candidatesTokensDetails": "responseTokensDetails",
}
_SYNTHETIC_ID_PREFIX = "relay-call-"


def _spellings(name: str) -> tuple[str, str]:
    """A proto-JSON field's two accepted spellings: camelCase and snake_case."""
    return name, _CAMEL_HUMP.sub("_", name).lower()


def _get(message: Mapping[str, Any], name: str) -> Any:
    camel, snake = _spellings(name)
    return message[camel] if camel in message else message.get(snake)


def _find(value: Any, path: tuple[str, ...], shown: str) -> str | None:
    """The first place `path` is present under `value`, written out for a close reason."""
    if not path:
        return shown
    step, rest = path[0], path[1:]
    if step == "[]":
        items = value if isinstance(value, list) else []
        for index, item in enumerate(items):
            found = _find(item, rest, f"{shown}[{index}]")
            if found is not None:
                return found
        return None
    if not isinstance(value, dict):
        return None
    child = _get(value, step)
    return None if child is None else _find(child, rest, f"{shown}.{step}")


def translate_setup(frame: str | bytes) -> str | bytes:
    """A Gemini API setup frame in Vertex's shape, or ProtocolViolation naming what cannot go."""
    setup = parse_setup_frame(frame)
    model = _get(setup, "model")
    if isinstance(model, str):
        name = model.strip()
        if name.startswith("tunedModels/"):
            raise ProtocolViolation(
                POLICY_VIOLATION,
                f'tuned model "{name[:60]}" exists only on the Gemini API: use a Live model id',
            )
        bare = name.removeprefix("models/")
        setup.pop("model", None)
        setup["model"] = MODEL_ALIASES.get(bare, bare)
    for path in GEMINI_ONLY_FIELDS:
        found = _find(setup, path, "setup")
        if found is not None:
            raise ProtocolViolation(
                POLICY_VIOLATION, f"{found} is a Gemini API field that Vertex AI does not accept"
            )
    generation = _get(setup, "generationConfig")
    if isinstance(generation, dict):
        for spelling in _spellings("modelSelectionConfig"):
            if spelling in generation:
                generation["modelConfig"] = generation.pop(spelling)
    return _dumps_like(frame, {"setup": setup})


def default_to_audio(accepted: AcceptedSetup) -> AcceptedSetup:
    """Answer in audio when the setup names no modality, as the Gemini API does.

    Applied after the project's locks and the token's forced fields, so a project that locks
    TEXT still fills in TEXT, and a Gemini-mode client that names none is not refused for it.
    """
    setup = parse_setup_frame(accepted.frame)
    generation = _get(setup, "generationConfig")
    if not isinstance(generation, dict):
        generation = {}
        setup["generationConfig"] = generation
    if _get(generation, "responseModalities") is not None:
        return accepted
    generation["responseModalities"] = ["AUDIO"]
    return AcceptedSetup(frame=_dumps_like(accepted.frame, {"setup": setup}), model=accepted.model)


class _ToolIds:
    """Ids the relay gave to tool calls that arrived without one, still awaiting an answer."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}  # synthetic id -> function name
        self._numbers = itertools.count(1)

    def issue(self, name: str) -> str:
        call_id = f"{_SYNTHETIC_ID_PREFIX}{next(self._numbers)}"
        self.pending[call_id] = name
        return call_id


class GeminiDialectLeg:
    """The upstream connection as a Gemini API client expects to see it.

    Wraps the session's upstream connection with the same `send` / `recv` / `close` surface;
    `Session` cannot tell it from the connection itself. One per session: it holds the
    synthetic tool-call ids of that session. Make it with `gemini_dialect_leg`.
    """

    def __init__(self, upstream: UpstreamLeg) -> None:
        self._upstream = upstream
        self._tool_ids = _ToolIds()

    def outgoing(self, message: Data) -> Data | None:
        """A client frame as Vertex takes it (None: nothing is left to send)."""
        if self._tool_ids.pending and _has_key(message, _TOOL_RESPONSE_KEYS):
            return self._tool_response(message)
        if _has_key(message, _AUDIO_STREAM_END_KEYS):
            return _without_audio_stream_end(message)
        return message

    async def send(self, message: Data) -> None:
        outgoing = self.outgoing(message)
        if outgoing is not None:
            await self._upstream.send(outgoing)

    async def recv(self) -> Data:
        frame = await self._upstream.recv()
        return self._server_message(frame) if _differs(frame) else frame

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._upstream.close(code, reason)

    # --- the frames that differ -----------------------------------------------------------

    def _server_message(self, frame: Data) -> Data:
        try:
            message = bounded_json.loads(frame)
        except ValueError:
            return frame
        if not isinstance(message, dict):
            return frame
        usage = message.get(_USAGE_KEY)
        if isinstance(usage, dict):
            for vertex_name, gemini_name in _USAGE_RENAMES.items():
                if vertex_name in usage:
                    usage[gemini_name] = usage.pop(vertex_name)
        call = message.get("toolCall")
        if isinstance(call, dict):
            for function_call in call.get("functionCalls") or []:
                if isinstance(function_call, dict) and not function_call.get("id"):
                    function_call["id"] = self._tool_ids.issue(str(function_call.get("name")))
        cancelled = message.get("toolCallCancellation")
        if isinstance(cancelled, dict) and not cancelled.get("ids") and self._tool_ids.pending:
            # A cancellation without ids can only mean the calls that came without ids.
            cancelled["ids"] = list(self._tool_ids.pending)
            self._tool_ids.pending.clear()
        return _dumps_like(frame, message)

    def _tool_response(self, frame: Data) -> Data:
        try:
            message = bounded_json.loads(frame)
        except ValueError:
            return frame
        response = _get(message, "toolResponse") if isinstance(message, dict) else None
        if not isinstance(response, dict):
            return frame
        for function_response in _get(response, "functionResponses") or []:
            if isinstance(function_response, dict):
                call_id = function_response.get("id")
                if isinstance(call_id, str) and call_id in self._tool_ids.pending:
                    # The upstream sent this call without an id: answer it the same way.
                    del self._tool_ids.pending[call_id]
                    del function_response["id"]
        return _dumps_like(frame, message)


class _GeminiDialectLane(GeminiDialectLeg, LaneOver):
    """The dialect over a leg with a fast lane, which it keeps: client frames are translated
    as `send` does, and an upstream frame that differs in the Gemini API declines the lane."""

    def __init__(self, upstream: UpstreamLeg, lane: Lane) -> None:
        super().__init__(upstream)
        self._lane = lane
        self._sink = None

    def declines(self, message: Data) -> bool:
        return _differs(message)


def gemini_dialect_leg(upstream: UpstreamLeg) -> UpstreamLeg:
    """`upstream` as a Gemini API client expects to see it, keeping its fast lane if any."""
    lane = lane_of(upstream)
    return GeminiDialectLeg(upstream) if lane is None else _GeminiDialectLane(upstream, lane)


def _differs(frame: Data) -> bool:
    """Whether a server frame may carry something the Gemini API names otherwise. Server frames
    are camelCase; audio frames (most of them) fail all three searches, made on the frame as
    it came (no copy of it per frame)."""
    if isinstance(frame, bytes):
        return any(key in frame for key in _SERVER_KEYS_BYTES)
    return any(key in frame for key in _SERVER_KEYS)


def _without_audio_stream_end(frame: Data) -> Data | None:
    """The frame without `realtimeInput.audioStreamEnd`, or None when nothing else is left.

    Only the Gemini API has it (the SDKs' Vertex converters refuse it); the Gemini-mode SDK
    sends it when the microphone pauses. Vertex's own voice detection ends the turn on the
    silence instead.
    """
    try:
        message = bounded_json.loads(frame)
    except ValueError:
        return frame
    realtime = _get(message, "realtimeInput") if isinstance(message, dict) else None
    if not isinstance(realtime, dict):
        return frame
    for spelling in _spellings("audioStreamEnd"):
        realtime.pop(spelling, None)
    if not realtime:
        return None
    return _dumps_like(frame, message)


def _dumps_like(frame: Data, message: Any) -> Data:
    """`message` as compact JSON, in the frame type `frame` came in (binary stays binary)."""
    text = json.dumps(message, separators=(",", ":"))
    return text.encode() if isinstance(frame, bytes) else text


def _quoted_spellings(name: str) -> tuple[tuple[str, str], tuple[bytes, bytes]]:
    """`"name"` in both spellings, as text and as bytes: built once, searched per frame."""
    quoted = tuple(f'"{spelling}"' for spelling in _spellings(name))
    return (quoted[0], quoted[1]), (quoted[0].encode(), quoted[1].encode())


_TOOL_RESPONSE_KEYS = _quoted_spellings("toolResponse")
_AUDIO_STREAM_END_KEYS = _quoted_spellings("audioStreamEnd")


def _has_key(frame: Data, keys: tuple[tuple[str, str], tuple[bytes, bytes]]) -> bool:
    """Whether a frame may carry a field (`keys`: its quoted spellings), without parsing it.
    Base64 never contains a quote, so a quoted key cannot hide inside media data."""
    if isinstance(frame, bytes):
        camel, snake = keys[1]
        return camel in frame or snake in frame
    text_camel, text_snake = keys[0]
    return text_camel in frame or text_snake in frame
