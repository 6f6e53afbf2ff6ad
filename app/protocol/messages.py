"""The client messages of Vertex's Live API (`BidiGenerateContent`), field by field.

The fields are those of the Vertex `BidiGenerateContent` messages (google.cloud.aiplatform
v1beta1) that the google-genai SDK's Vertex converters emit (`_live_converters.py`,
`*_to_vertex`); the SDK refuses the others before sending (`labels`, `willContinue`,
`audioStreamEnd`, ...). The service parses proto-JSON: a field is accepted under exactly two
names, its lowerCamelCase JSON name and its snake_case proto name (`SPELLINGS`), at every depth.

Values of free-form fields (`Struct`, `Value`, OpenAPI `Schema`, built-in tool configs) are
user data: nothing here looks into them. A new field or message is taught here, once, and both
the emulator and the relay know it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
        "historyConfig": "HistoryConfig",
        "avatarConfig": "AvatarConfig",
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
        "thinkingConfig": "ThinkingConfig",
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
    # `customVocabulary` biases recognition towards the given terms (Gemini 3.8 Live);
    # `adaptationPhrases`, `languageAuto` and `languageHints` are its deprecated forerunners.
    "AudioTranscriptionConfig": {
        "languageCodes": "[]string",
        "customVocabulary": "[]string",
        "adaptationPhrases": "[]string",
        "languageAuto": "any",
        "languageHints": "any",
        "wordTimestamp": "bool",
        "diarization": "bool",
        "mode": "enum:AudioTranscriptionMode",
        "sourceText": "string",
    },
    "ProactivityConfig": {"proactiveAudio": "bool"},
    "ThinkingConfig": {
        "includeThoughts": "bool",
        "thinkingBudget": "int",
        "thinkingLevel": "enum:ThinkingLevel",
    },
    "HistoryConfig": {"initialHistoryInClientContent": "bool"},
    # Live Avatar video output (`responseModalities: ["VIDEO"]`, Gemini 3.8 Live).
    "AvatarConfig": {
        "avatarName": "string",
        "customizedAvatar": "CustomizedAvatar",
        "audioBitrateBps": "int",
        "videoBitrateBps": "int",
    },
    "CustomizedAvatar": {"imageMimeType": "string", "imageData": "bytes"},
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
    "Modality": frozenset({"MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO", "VIDEO"}),
    "AudioTranscriptionMode": frozenset({"MODE_UNSPECIFIED", "VERBATIM", "SMART"}),
    "ThinkingLevel": frozenset(
        {"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"}
    ),
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


CLIENT_MESSAGE = "BidiGenerateContentClientMessage"

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """The proto (snake_case) name of a field given by its JSON (camelCase) name."""
    return _CAMEL_HUMP.sub("_", name).lower()


def _spellings(fields: Mapping[str, str]) -> dict[str, str]:
    return {spelling: name for name in fields for spelling in (name, snake(name))}


# Message name -> {each accepted spelling of a field -> its camelCase name}.
SPELLINGS: dict[str, dict[str, str]] = {
    name: _spellings(fields) for name, fields in MESSAGES.items()
}
