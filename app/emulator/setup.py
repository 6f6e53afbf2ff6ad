"""The first client message: validated and reduced to what the emulated session uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from app.emulator.config import EmulatorConfig
from app.emulator.speech import DEFAULT_VOICE
from app.emulator.tokens import VIDEO_TOKENS_PER_FRAME, video_tokens_per_frame
from app.emulator.vad import VadSettings
from app.emulator.wire import INVALID_ARGUMENT
from app.protocol.errors import ProtocolViolation

_VERTEX_MODEL = re.compile(r"projects/[^/]+/locations/[^/]+/publishers/google/models/([^/]+)")
_VERTEX_PROJECT = re.compile(r"projects/([^/]+)/")


# A session whose system instruction is exactly this runs in load-test mode (every audio chunk
# answered at once by the same bytes), whatever the emulator's `echo_audio`: so `live-relay
# loadtest` works against any emulator, `make run`'s included, with no option to restart it.
ECHO_AUDIO_INSTRUCTION = "live-relay loadtest: answer each audio chunk with itself"


@dataclass(frozen=True)
class SessionSetup:
    model: str
    # VIDEO: a Live Avatar speaks (audio) and is seen (MP4 chunks at 24 fps).
    response_modality: Literal["TEXT", "AUDIO", "VIDEO"]
    voice: str
    system_instruction: str
    function_names: tuple[str, ...]
    # Declared functions whose calls hold the turn until answered (the others do not).
    blocking_functions: frozenset[str]
    # Whether function calls carry ids (per model; see EmulatorConfig.models_without_call_ids).
    call_ids: bool
    vad: VadSettings
    interrupts: bool
    input_transcription: bool
    output_transcription: bool
    resumption: bool
    # `sessionResumption.transparent` (Vertex only): updates report the last consumed index.
    transparent_resumption: bool
    resume_handle: str | None
    # `contextWindowCompression` was set: no session duration cap applies.
    compression: bool
    # `inputAudioTranscription.customVocabulary`: terms the transcription is biased towards.
    vocabulary: tuple[str, ...] = ()
    # `clientContent` with `turnComplete` interrupts whatever `activityHandling` says
    # (Gemini 3.8 Live), and content without it does not interrupt.
    turn_complete_interrupts: bool = False
    # The model only transcribes: each utterance comes back as an inputTranscription.
    transcription_only: bool = False
    # Whether turns end with `usageMetadata`.
    reports_usage: bool = True
    # Tokens an input video frame costs (`generationConfig.mediaResolution`).
    video_tokens_per_frame: int = VIDEO_TOKENS_PER_FRAME

    @property
    def echoes_audio(self) -> bool:
        return self.system_instruction == ECHO_AUDIO_INSTRUCTION


def parse_setup(setup: Any, config: EmulatorConfig, api_version: str) -> SessionSetup:
    """Raises ProtocolViolation with the close the service would send.

    The message has passed `app.protocol.canonical.check_client_message`: only its values
    are checked here.
    """
    if not isinstance(setup, dict):
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    if config.known_projects is not None:
        _check_project(setup.get("model"), config.known_projects)
    model = _known_model(setup.get("model"), config.known_models, api_version)
    try:
        parsed = _parse(setup, model, config)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ProtocolViolation(1007, INVALID_ARGUMENT) from None
    if parsed.response_modality == "TEXT" and config.audio_only(model):
        # A native-audio model asked for text: Vertex answers in these words, naming nothing.
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    if parsed.voice not in config.voices:
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    _check_model_settings(setup, parsed, config)
    return parsed


# Tools that search (Vertex: "multiple tools are supported only if they are all search tools").
_SEARCH_TOOLS = frozenset({"googleSearch", "googleSearchRetrieval", "enterpriseWebSearch"})
_NON_SEARCH_TOOLS = frozenset({"functionDeclarations", "retrieval"})


def _check_model_settings(
    setup: dict[str, Any], parsed: SessionSetup, config: EmulatorConfig
) -> None:
    """What the current models refuse in a setup. Vertex does not publish the words of these
    refusals: they get its generic 1007 text, like its other invalid arguments."""
    model = parsed.model
    proactivity = setup.get("proactivity") or {}
    if proactivity.get("proactiveAudio") is False and config.proactive_audio_always_on(model):
        raise ProtocolViolation(1007, INVALID_ARGUMENT)  # always on: "false returns an error"
    generation = setup.get("generationConfig") or {}
    if generation.get("thinkingConfig") is not None and model in config.models_without_thinking:
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    if parsed.transcription_only and (parsed.response_modality != "TEXT" or parsed.function_names):
        raise ProtocolViolation(1007, INVALID_ARGUMENT)  # it streams text, and calls nothing
    if config.search_with_function_calling == "refuse":
        kinds = {kind for tool in setup.get("tools") or [] for kind in tool}
        if kinds & _SEARCH_TOOLS and kinds & _NON_SEARCH_TOOLS:
            raise ProtocolViolation(1007, INVALID_ARGUMENT)


def _check_project(model: object, known_projects: tuple[str, ...]) -> None:
    """A project the caller may not use is refused the way Vertex refuses it (PERMISSION_DENIED)."""
    match = _VERTEX_PROJECT.match(model) if isinstance(model, str) else None
    if match is not None and match.group(1) not in known_projects:
        raise ProtocolViolation(
            1008, f"Permission denied on resource project {match.group(1)} (or it may not exist)."
        )


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


def _parse(setup: dict[str, Any], model: str, config: EmulatorConfig) -> SessionSetup:
    generation = setup.get("generationConfig") or {}
    modalities = [str(m).upper() for m in generation.get("responseModalities") or ["AUDIO"]]
    if len(modalities) != 1 or modalities[0] not in ("TEXT", "AUDIO", "VIDEO"):
        raise ValueError("exactly one response modality, TEXT, AUDIO or VIDEO")
    if modalities[0] == "VIDEO" and not config.video_output(model):
        raise ValueError("only the Live Avatar models answer in video")
    voice_config = (generation.get("speechConfig") or {}).get("voiceConfig") or {}
    voice = (voice_config.get("prebuiltVoiceConfig") or {}).get("voiceName") or DEFAULT_VOICE
    realtime = setup.get("realtimeInputConfig") or {}
    resumption = setup.get("sessionResumption")
    function_names, blocking_functions = functions(setup.get("tools") or [], model, config)
    return SessionSetup(
        model=model,
        response_modality=_modality(modalities[0]),
        voice=str(voice),
        system_instruction=_content_text(setup.get("systemInstruction")),
        function_names=function_names,
        blocking_functions=blocking_functions,
        call_ids=model not in config.models_without_call_ids,
        vad=VadSettings.from_setup(realtime.get("automaticActivityDetection") or {}),
        interrupts=realtime.get("activityHandling") != "NO_INTERRUPTION",
        input_transcription=setup.get("inputAudioTranscription") is not None,
        output_transcription=setup.get("outputAudioTranscription") is not None,
        resumption=resumption is not None,
        transparent_resumption=bool((resumption or {}).get("transparent")),
        resume_handle=(resumption or {}).get("handle") or None,
        compression=setup.get("contextWindowCompression") is not None,
        vocabulary=tuple(
            str(term)
            for term in (setup.get("inputAudioTranscription") or {}).get("customVocabulary") or []
        ),
        turn_complete_interrupts=config.turn_complete_interrupts(model),
        transcription_only=config.transcription_only(model),
        reports_usage=model not in config.models_without_usage,
        video_tokens_per_frame=video_tokens_per_frame(generation.get("mediaResolution")),
    )


def _modality(name: str) -> Literal["TEXT", "AUDIO", "VIDEO"]:
    if name == "TEXT":
        return "TEXT"
    return "VIDEO" if name == "VIDEO" else "AUDIO"


def refused_fields(
    config: EmulatorConfig, setup: SessionSetup | None = None
) -> dict[str, frozenset[str]]:
    """Fields of `app.protocol.messages.MESSAGES` this emulator treats as unknown, by message:
    what the configuration turned off and, once the setup is known, what its model lacks."""
    refused: dict[str, set[str]] = {}
    if config.audio_stream_end == "refuse":
        refused.setdefault("BidiGenerateContentRealtimeInput", set()).add("audioStreamEnd")
    if config.function_response_scheduling == "refuse":
        refused.setdefault("FunctionResponse", set()).add("scheduling")
    if setup is not None and not setup.call_ids:
        # Without ids in its calls, Vertex refused an id in the answers too.
        refused.setdefault("FunctionResponse", set()).add("id")
    return {message: frozenset(names) for message, names in refused.items()}


def functions(
    tools: list[Any], model: str, config: EmulatorConfig
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The declared function names, and those among them whose calls block the turn."""
    declarations = [
        declaration for tool in tools for declaration in tool.get("functionDeclarations") or []
    ]
    blocks_by_default = config.calls_block_by_default(model)
    return (
        tuple(str(declaration["name"]) for declaration in declarations),
        frozenset(
            str(declaration["name"])
            for declaration in declarations
            if _blocks(declaration.get("behavior"), blocks_by_default)
        ),
    )


def content_text(content: Any) -> str:
    """The text of a `Content` (the SDK also accepts a bare string)."""
    return _content_text(content)


def _blocks(behavior: object, default: bool) -> bool:
    if behavior == "BLOCKING":
        return True
    if behavior == "NON_BLOCKING":
        return False
    return default


def _content_text(content: Any) -> str:
    """The text of a `Content` (the SDK also accepts a bare string)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(str(part["text"]) for part in content.get("parts") or [] if "text" in part)
