"""The first client message: validated and reduced to what the emulated session uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from app.emulator.speech import DEFAULT_VOICE
from app.emulator.vad import VadSettings
from app.emulator.wire import INVALID_ARGUMENT, ProtocolViolation

_VERTEX_MODEL = re.compile(r"projects/[^/]+/locations/[^/]+/publishers/google/models/([^/]+)")


@dataclass(frozen=True)
class SessionSetup:
    model: str
    response_modality: Literal["TEXT", "AUDIO"]
    voice: str
    system_instruction: str
    function_names: tuple[str, ...]
    vad: VadSettings
    interrupts: bool
    input_transcription: bool
    output_transcription: bool
    resumption: bool
    # `sessionResumption.transparent` (Vertex only): updates report the last consumed index.
    transparent_resumption: bool
    resume_handle: str | None


def parse_setup(setup: Any, known_models: tuple[str, ...], api_version: str) -> SessionSetup:
    """Raises ProtocolViolation with the close the service would send."""
    if not isinstance(setup, dict):
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    model = _known_model(setup.get("model"), known_models, api_version)
    try:
        return _parse(setup, model)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ProtocolViolation(1007, INVALID_ARGUMENT) from None


def _known_model(model: object, known_models: tuple[str, ...], api_version: str) -> str:
    if not isinstance(model, str) or not model:
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    match = _VERTEX_MODEL.fullmatch(model)
    name = match.group(1) if match else model
    if match is None or name not in known_models:
        raise ProtocolViolation(
            1008,
            f"models/{name} is not found for API version {api_version}, "
            "or is not supported for bidiGenerateContent",
        )
    return name


def _parse(setup: dict[str, Any], model: str) -> SessionSetup:
    generation = setup.get("generationConfig") or {}
    modalities = [str(m).upper() for m in generation.get("responseModalities") or ["AUDIO"]]
    if len(modalities) != 1 or modalities[0] not in ("TEXT", "AUDIO"):
        raise ValueError("exactly one response modality, TEXT or AUDIO")
    voice_config = (generation.get("speechConfig") or {}).get("voiceConfig") or {}
    voice = (voice_config.get("prebuiltVoiceConfig") or {}).get("voiceName") or DEFAULT_VOICE
    realtime = setup.get("realtimeInputConfig") or {}
    resumption = setup.get("sessionResumption")
    return SessionSetup(
        model=model,
        response_modality="TEXT" if modalities[0] == "TEXT" else "AUDIO",
        voice=str(voice),
        system_instruction=_content_text(setup.get("systemInstruction")),
        function_names=tuple(
            str(declaration["name"])
            for tool in setup.get("tools") or []
            for declaration in tool.get("functionDeclarations") or []
        ),
        vad=VadSettings.from_setup(realtime.get("automaticActivityDetection") or {}),
        interrupts=realtime.get("activityHandling") != "NO_INTERRUPTION",
        input_transcription=setup.get("inputAudioTranscription") is not None,
        output_transcription=setup.get("outputAudioTranscription") is not None,
        resumption=resumption is not None,
        transparent_resumption=bool((resumption or {}).get("transparent")),
        resume_handle=(resumption or {}).get("handle") or None,
    )


def _content_text(content: Any) -> str:
    """The text of a `Content` (the SDK also accepts a bare string)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(str(part["text"]) for part in content.get("parts") or [] if "text" in part)
