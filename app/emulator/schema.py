"""The client messages Vertex's proto-JSON parser accepts, and its words when it refuses one.

The fields are those of the Vertex `BidiGenerateContent` messages (google.cloud.aiplatform
v1beta1) that the google-genai SDK's Vertex converters emit (`_live_converters.py`,
`*_to_vertex`); the SDK refuses the others before sending (`labels`, `willContinue`,
`audioStreamEnd`, ...). A field name is accepted in camelCase or snake_case, as by the
service; an unknown one closes 1007 with the service's text, a snake_case path and the name
as sent:

    Invalid JSON payload received. Unknown name "scheduling" at
    'tool_response.function_responses[0]': Cannot find field.

Values of free-form fields (`Struct`, `Value`, OpenAPI `Schema`, built-in tool configs) are
user data and are not looked into.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

from app.emulator.wire import ProtocolViolation

# A field's type: a message name (a key of MESSAGES), a scalar, "any" (free-form), or an
# enum ("enum:Name", values in ENUMS). A leading "[]" makes it repeated.
MESSAGES: dict[str, dict[str, str]] = {
    "BidiGenerateContentClientMessage": {
        "setup": "BidiGenerateContentSetup",
        "clientContent": "BidiGenerateContentClientContent",
        "realtimeInput": "BidiGenerateContentRealtimeInput",
        "toolResponse": "BidiGenerateContentToolResponse",
        "contextUpdate": "BidiGenerateContentClientContextUpdate",
    },
    # What `AsyncSession.send_context_update` sends (the SDK's Vertex converter passes it).
    "BidiGenerateContentClientContextUpdate": {
        "systemInstruction": "Content",
        "tools": "ContextUpdateTools",
    },
    "ContextUpdateTools": {"tools": "[]Tool"},
    "BidiGenerateContentSetup": {
        "model": "string",
        "generationConfig": "GenerationConfig",
        "systemInstruction": "Content",
        "tools": "[]Tool",
        "sessionResumption": "SessionResumptionConfig",
        "contextWindowCompression": "ContextWindowCompressionConfig",
        "realtimeInputConfig": "RealtimeInputConfig",
        "inputAudioTranscription": "AudioTranscriptionConfig",
        "outputAudioTranscription": "AudioTranscriptionConfig",
        "proactivity": "ProactivityConfig",
        "explicitVadSignal": "bool",
        "historyConfig": "any",
        "avatarConfig": "any",
        "safetySettings": "[]any",
        "labels": "any",
    },
    "GenerationConfig": {
        "candidateCount": "int",
        "maxOutputTokens": "int",
        "temperature": "number",
        "topP": "number",
        "topK": "number",
        "presencePenalty": "number",
        "frequencyPenalty": "number",
        "seed": "int",
        "responseModalities": "[]enum:Modality",
        "speechConfig": "SpeechConfig",
        "mediaResolution": "enum:MediaResolution",
        "thinkingConfig": "any",
        "enableAffectiveDialog": "bool",
        "audioTimestamp": "bool",
        "logprobs": "int",
        "responseLogprobs": "bool",
        "responseMimeType": "string",
        "responseSchema": "any",
        "responseJsonSchema": "any",
        "routingConfig": "any",
        "modelConfig": "any",
        "stopSequences": "[]string",
        "translationConfig": "any",
        "audioTranscriptionConfig": "any",
        "responseFormat": "[]any",
    },
    "SpeechConfig": {
        "voiceConfig": "VoiceConfig",
        "languageCode": "string",
        "multiSpeakerVoiceConfig": "any",
    },
    "VoiceConfig": {
        "prebuiltVoiceConfig": "PrebuiltVoiceConfig",
        "replicatedVoiceConfig": "any",
        "voice": "any",
    },
    "PrebuiltVoiceConfig": {"voiceName": "string"},
    "Content": {"role": "string", "parts": "[]Part"},
    "Part": {
        "text": "string",
        "inlineData": "Blob",
        "fileData": "any",
        "functionCall": "any",
        "functionResponse": "any",
        "executableCode": "any",
        "codeExecutionResult": "any",
        "thought": "bool",
        "thoughtSignature": "bytes",
        "videoMetadata": "any",
        "mediaResolution": "any",
    },
    "Blob": {"mimeType": "string", "data": "bytes", "displayName": "string"},
    "Tool": {
        "functionDeclarations": "[]FunctionDeclaration",
        "retrieval": "any",
        "googleSearch": "any",
        "googleSearchRetrieval": "any",
        "codeExecution": "any",
        "enterpriseWebSearch": "any",
        "googleMaps": "any",
        "urlContext": "any",
        "computerUse": "any",
        "parallelAiSearch": "any",
        "exaAiSearch": "any",
        "mcpServers": "[]any",
    },
    "FunctionDeclaration": {
        "name": "string",
        "description": "string",
        "parameters": "any",
        "parametersJsonSchema": "any",
        "response": "any",
        "responseJsonSchema": "any",
        "behavior": "enum:Behavior",
    },
    "SessionResumptionConfig": {"handle": "string", "transparent": "bool"},
    "ContextWindowCompressionConfig": {"triggerTokens": "int", "slidingWindow": "SlidingWindow"},
    "SlidingWindow": {"targetTokens": "int"},
    "RealtimeInputConfig": {
        "automaticActivityDetection": "AutomaticActivityDetection",
        "activityHandling": "enum:ActivityHandling",
        "turnCoverage": "enum:TurnCoverage",
    },
    "AutomaticActivityDetection": {
        "disabled": "bool",
        "startOfSpeechSensitivity": "enum:StartSensitivity",
        "endOfSpeechSensitivity": "enum:EndSensitivity",
        "prefixPaddingMs": "int",
        "silenceDurationMs": "int",
    },
    "AudioTranscriptionConfig": {"languageCodes": "[]string"},
    "ProactivityConfig": {"proactiveAudio": "bool"},
    "BidiGenerateContentClientContent": {"turns": "[]Content", "turnComplete": "bool"},
    "BidiGenerateContentRealtimeInput": {
        "mediaChunks": "[]Blob",
        "audio": "Blob",
        "video": "Blob",
        "text": "string",
        "activityStart": "Empty",
        "activityEnd": "Empty",
        "audioStreamEnd": "bool",
    },
    "Empty": {},
    "BidiGenerateContentToolResponse": {"functionResponses": "[]FunctionResponse"},
    "FunctionResponse": {
        "id": "string",
        "name": "string",
        "response": "any",
        "parts": "[]any",
        "scheduling": "enum:FunctionResponseScheduling",
    },
}

ENUMS: dict[str, frozenset[str]] = {
    "Modality": frozenset({"MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO"}),
    "MediaResolution": frozenset(
        {
            "MEDIA_RESOLUTION_UNSPECIFIED",
            "MEDIA_RESOLUTION_LOW",
            "MEDIA_RESOLUTION_MEDIUM",
            "MEDIA_RESOLUTION_HIGH",
        }
    ),
    "Behavior": frozenset({"UNSPECIFIED", "BLOCKING", "NON_BLOCKING"}),
    "ActivityHandling": frozenset(
        {"ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"}
    ),
    "TurnCoverage": frozenset(
        {
            "TURN_COVERAGE_UNSPECIFIED",
            "TURN_INCLUDES_ONLY_ACTIVITY",
            "TURN_INCLUDES_ALL_INPUT",
            "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
        }
    ),
    "StartSensitivity": frozenset(
        {"START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"}
    ),
    "EndSensitivity": frozenset(
        {"END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"}
    ),
    "FunctionResponseScheduling": frozenset(
        {"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"}
    ),
}

_TYPE_URL = "type.googleapis.com/google.cloud.aiplatform.v1beta1."
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_SCALAR_KINDS = {
    "string": "TYPE_STRING",
    "bool": "TYPE_BOOL",
    "int": "TYPE_INT32",
    "number": "TYPE_FLOAT",
    "bytes": "TYPE_BYTES",
}


def snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


@lru_cache(maxsize=1024)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# A path is built as a tuple of camelCase field names and "[i]" indices, and only turned into
# the service's snake_case text when a refusal needs it: the hot path stays cheap.
Path = tuple[str, ...]


def _path_text(path: Path) -> str:
    text = "".join(part if part.startswith("[") else f".{snake(part)}" for part in path)
    return text.lstrip(".")


def check_client_message(message: Any, refused: Mapping[str, Collection[str]] = {}) -> None:
    """Raise the ProtocolViolation the service closes with, if `message` (parsed JSON, as the
    client sent it) is not a valid client message. `refused` names fields, by message,
    to treat as unknown (what this model or configuration does not have)."""
    if not isinstance(message, dict):
        raise ProtocolViolation(
            1007, _invalid_value((), "BidiGenerateContentClientMessage", message)
        )
    _check_message(message, "BidiGenerateContentClientMessage", (), refused)


def _check_message(
    value: dict[str, Any], name: str, path: Path, refused: Mapping[str, Collection[str]]
) -> None:
    fields = MESSAGES[name]
    refused_here = refused.get(name, ())
    for key, item in value.items():
        field = _camel(key)
        kind = fields.get(field)
        if kind is None or field in refused_here:
            where = f" at '{_path_text(path)}'" if path else ""
            raise ProtocolViolation(
                1007,
                f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.',
            )
        if item is not None:  # proto-JSON reads null as "not set"
            _check_field(item, kind, (*path, field), refused)


def _check_field(value: Any, kind: str, path: Path, refused: Mapping[str, Collection[str]]) -> None:
    if kind.startswith("[]"):
        if not isinstance(value, list):
            raise ProtocolViolation(1007, _invalid_value(path, kind[2:], value))
        for index, item in enumerate(value):
            _check_single(item, kind[2:], (*path, f"[{index}]"), refused)
        return
    _check_single(value, kind, path, refused)


def _check_single(
    value: Any, kind: str, path: Path, refused: Mapping[str, Collection[str]]
) -> None:
    if kind == "any":
        return
    if kind in MESSAGES:
        if not isinstance(value, dict):
            raise ProtocolViolation(1007, _invalid_value(path, kind, value))
        _check_message(value, kind, path, refused)
    elif kind.startswith("enum:"):
        enum = kind[5:]
        if not (isinstance(value, str) and value.upper() in ENUMS[enum]) and not (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            raise ProtocolViolation(1007, _invalid_value(path, enum, value))
    elif not _scalar_fits(value, kind):
        raise ProtocolViolation(1007, _invalid_value(path, kind, value))


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


def _invalid_value(path: Path, kind: str, value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    type_name = _SCALAR_KINDS.get(kind) or f"{_TYPE_URL}{kind}"
    return f"Invalid value at '{_path_text(path)}' ({type_name}), {shown}"
