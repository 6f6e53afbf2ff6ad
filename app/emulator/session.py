"""One emulated Live session after setup: the model's side of the conversation.

The connection's receive loop hands every client message to `LiveSession.handle`, which
never blocks: it updates state, detects voice activity and queues user turns. The model
task (`run_model`) takes turns one at a time and streams replies through `send`. The two
meet in `_interrupt`: user activity during a reply sets it (unless the setup asked for
NO_INTERRUPTION) and the model task stops at its next chunk.

Function calls either hold the turn (blocking: the reply waits for the response, and user
activity cancels the call) or end it (non-blocking: the response, when it comes, is queued
as a turn of its own). Resumption handles are only issued while the model is idle, with no
turn queued and no call pending: only then is the state a handle saves complete.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.emulator.avatar import AvatarStream, frames_for
from app.emulator.caps import MediaClock
from app.emulator.config import EmulatorConfig
from app.emulator.consumption import ConsumptionLog
from app.emulator.replies import (
    Entry,
    ToolTrigger,
    chunks,
    compact_json,
    find_tool_call,
    reply_text,
    spoken_input_text,
    tool_reply_text,
)
from app.emulator.resumption import HandleStore, SessionState, Snapshot
from app.emulator.setup import SessionSetup, content_text, functions, refused_fields
from app.emulator.speech import OUTPUT_MIME_TYPE, Voice
from app.emulator.stats import EmulatorStats
from app.emulator.tokens import (
    NO_TOKENS,
    TokenCounts,
    audio_tokens,
    text_tokens,
    usage_metadata,
)
from app.emulator.vad import ActivityStarted, VoiceActivityDetector
from app.emulator.wire import INVALID_ARGUMENT, decode_base64, encode_base64
from app.protocol.errors import ProtocolViolation

Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_INPUT_SAMPLE_RATE = 16_000
_RATE = re.compile(r"rate=(\d+)")
EXPLICIT_ACTIVITY_REFUSED = (
    "Explicit activity control is not supported when automatic activity detection is enabled."
)
INPUT_DURING_TOOL_CALL_REFUSED = "Operation is not implemented, or supported, or enabled."


@dataclass(frozen=True)
class UserTurn:
    text: str
    spoken: bool  # from audio: the text is its transcription, the audio is what counts
    audio_seconds: float  # audio and video received since the previous turn
    video_frames: int
    # A non-blocking function's result to speak about: (function name, its response).
    tool_result: tuple[str, Any] | None = None


@dataclass(frozen=True)
class _PendingCall:
    id: str | None  # None: the model sends no call ids
    name: str
    # A blocking call's response, or None when the user interrupted the call.
    response: asyncio.Future[Any] | None

    def answered_by(self, response: dict[str, Any]) -> bool:
        if self.id is None:
            return response.get("name") == self.name
        return response.get("id") == self.id


class LiveSession:
    def __init__(
        self,
        setup: SessionSetup,
        config: EmulatorConfig,
        *,
        send: Send,
        state: SessionState,
        log: ConsumptionLog,
        handles: HandleStore,
        stats: EmulatorStats,
        call_ids: itertools.count[int],
    ) -> None:
        self._setup = setup
        self._config = config
        # What `check_client_message` (app.protocol.canonical) must treat as unknown in this
        # session's messages.
        self.refused_fields = refused_fields(config, setup)
        # What the session duration cap counts: the conversation's media or this connection's.
        self.media = (
            log.conversation.media if config.session_cap_scope == "conversation" else MediaClock()
        )
        self._send = send
        self._log = log
        self._handles = handles
        self._stats = stats
        self._call_ids = call_ids
        self._history = list(state.history)
        self._history_tokens = sum(text_tokens(entry.text) for entry in state.history)
        self._voice = Voice(setup.voice)
        self._avatar = AvatarStream()
        saved_detector = state.detector()
        self._vad = (
            saved_detector
            if saved_detector is not None and saved_detector.settings == setup.vad
            else VoiceActivityDetector(setup.vad)
        )
        self._turns: asyncio.Queue[UserTurn] = asyncio.Queue()
        self._interrupt = asyncio.Event()
        self._replying = False
        self._pending_call: _PendingCall | None = None  # a blocking call holding the turn
        self._background_calls: list[_PendingCall] = []  # non-blocking calls not answered yet
        # None: no activity open.
        self._explicit_activity_seconds: float | None = state.explicit_activity_seconds
        self._client_text: list[str] = list(state.client_text)
        self._audio_seconds = state.audio_seconds
        self._video_frames = state.video_frames
        # Set when a client message was consumed, for the idle resumption updates.
        self._consumed = asyncio.Event()
        self._reported_index = -1  # the index the latest resumable update reported

    # --- client messages ------------------------------------------------------------------

    @property
    def setup(self) -> SessionSetup:
        return self._setup

    def handle(self, kind: str, value: Any) -> None:
        """Apply one client message (top-level field `kind`); raises ProtocolViolation."""
        try:
            if kind == "realtimeInput":
                self._realtime_input(_message(value))
            elif kind == "clientContent":
                self._client_content(_message(value))
            elif kind == "toolResponse":
                self._tool_response(_message(value))
            elif kind == "contextUpdate":
                self._context_update(_message(value))
            elif kind == "setup":
                raise ProtocolViolation(1007, INVALID_ARGUMENT)
            else:
                raise ProtocolViolation(
                    1007,
                    f'Invalid JSON payload received. Unknown name "{kind}": Cannot find field.',
                )
        except (AttributeError, KeyError, TypeError, ValueError):
            # A field of the wrong shape (a list where an object belongs, ...): the service
            # refuses such a message as a whole.
            raise ProtocolViolation(1007, INVALID_ARGUMENT) from None
        self._log.consume(kind, value)
        self._consumed.set()

    def _realtime_input(self, value: dict[str, Any]) -> None:
        if self._pending_call is not None and self._config.close_on_input_during_tool_call:
            raise ProtocolViolation(1008, INPUT_DURING_TOOL_CALL_REFUSED)
        for chunk in value.get("mediaChunks") or []:
            blob = _message(chunk)
            if str(blob.get("mimeType", "")).startswith("audio/"):
                self._audio(blob, "realtime_input.media_chunks.data")
            else:
                self._video(blob, "realtime_input.media_chunks.data")
        if "audio" in value:
            self._audio(_message(value["audio"]), "realtime_input.audio.data")
        if "video" in value:
            self._video(_message(value["video"]), "realtime_input.video.data")
        if "text" in value:
            self._stats.frames_received["text"] += 1
            self._stats.texts.append(str(value["text"]))
            self._user_activity()
            self._queue_turn(str(value["text"]), spoken=False)
        if "activityStart" in value:
            self._stats.frames_received["activity_start"] += 1
            self._explicit_activity_start()
        if "activityEnd" in value:
            self._stats.frames_received["activity_end"] += 1
            self._explicit_activity_end()
        if value.get("audioStreamEnd"):
            self._stats.frames_received["audio_stream_end"] += 1
            self._audio_stream_end()

    def _audio(self, blob: dict[str, Any], field: str) -> None:
        self._stats.frames_received["audio"] += 1
        self.media.saw(audio=True)
        pcm = decode_base64(blob.get("data"), field)
        rate = _sample_rate(blob.get("mimeType"))
        seconds = len(pcm) // 2 / rate
        self._audio_seconds += seconds
        if not self._setup.vad.enabled:
            if self._explicit_activity_seconds is not None:
                self._explicit_activity_seconds += seconds
            return
        for event in self._vad.feed(pcm, rate):
            if isinstance(event, ActivityStarted):
                self._user_activity()
            else:
                self._queue_turn(self._heard(event.speech_seconds), spoken=True)

    def _video(self, blob: dict[str, Any], field: str) -> None:
        self._stats.frames_received["video"] += 1
        self.media.saw(video=True)
        decode_base64(blob.get("data"), field)
        self._video_frames += 1

    def _explicit_activity_start(self) -> None:
        if self._setup.vad.enabled:
            raise ProtocolViolation(1007, EXPLICIT_ACTIVITY_REFUSED)
        self._explicit_activity_seconds = 0.0
        self._user_activity()

    def _explicit_activity_end(self) -> None:
        if self._setup.vad.enabled:
            raise ProtocolViolation(1007, EXPLICIT_ACTIVITY_REFUSED)
        if self._explicit_activity_seconds is not None:
            seconds, self._explicit_activity_seconds = self._explicit_activity_seconds, None
            self._queue_turn(self._heard(seconds), spoken=True)

    def _audio_stream_end(self) -> None:
        if self._setup.vad.enabled and (ended := self._vad.end_of_stream()) is not None:
            self._queue_turn(self._heard(ended.speech_seconds), spoken=True)

    def _client_content(self, value: dict[str, Any]) -> None:
        self._stats.frames_received["client_content"] += 1
        if not self._setup.turn_complete_interrupts:
            self._user_activity()
        elif value.get("turnComplete"):
            # Gemini 3.8 Live: a completed turn interrupts the reply unconditionally; content
            # without turnComplete only waits for more.
            self._interrupt_reply()
        for content in value.get("turns") or []:
            content = _message(content)
            parts = [_message(part) for part in content.get("parts") or []]
            text = " ".join(str(part["text"]) for part in parts if "text" in part)
            if content.get("role") == "model":
                self._remember(Entry("model", text))
            else:
                self._client_text.append(text)
        if value.get("turnComplete"):
            text, self._client_text = " ".join(self._client_text), []
            self._queue_turn(text, spoken=False)

    def _tool_response(self, value: dict[str, Any]) -> None:
        self._stats.frames_received["tool_response"] += 1
        for index, response in enumerate(value.get("functionResponses") or []):
            response = _message(response)
            call = self._answered_call(response, index)
            # Answers to unknown or cancelled calls are ignored, as by the service.
            if call is None:
                continue
            if call is self._pending_call:
                assert call.response is not None
                if not call.response.done():
                    call.response.set_result(response.get("response") or {})
            else:
                self._background_calls.remove(call)
                self._background_result(call, response)

    def _answered_call(self, response: dict[str, Any], index: int) -> _PendingCall | None:
        """The pending call `response` answers: by its id or, without one, by its name when
        exactly one pending call has that name (Vertex's asynchronous function calling
        examples answer by name). An answer that could be meant for several is refused."""
        pending = [*self._background_calls]
        call = self._pending_call
        if call is not None and call.response is not None:
            pending.insert(0, call)
        if "id" in response or self._setup.call_ids is False:
            return next((c for c in pending if c.answered_by(response)), None)
        where = f"tool_response.function_responses[{index}]"
        name = response.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolViolation(
                1007, f"{where} has neither an id nor a name: it answers no function call"
            )
        named = [c for c in pending if c.name == name]
        if len(named) > 1:
            raise ProtocolViolation(
                1007,
                f'{where} has no id, and {len(named)} pending calls are named "{name}"',
            )
        return named[0] if named else None

    def _context_update(self, value: dict[str, Any]) -> None:
        """New system instruction and/or tools for the turns to come (`[]` clears the tools)."""
        self._stats.frames_received["context_update"] += 1
        self._stats.context_updates.append(value)
        setup = self._setup
        if "systemInstruction" in value:
            setup = dataclasses.replace(
                setup, system_instruction=content_text(value["systemInstruction"])
            )
        if "tools" in value:
            names, blocking = functions(
                _message(value["tools"]).get("tools") or [], setup.model, self._config
            )
            setup = dataclasses.replace(setup, function_names=names, blocking_functions=blocking)
        self._setup = setup

    def _background_result(self, call: _PendingCall, response: dict[str, Any]) -> None:
        """A non-blocking call's response, scheduled as the response asks (default WHEN_IDLE)."""
        scheduling = response.get("scheduling") or "WHEN_IDLE"
        if scheduling == "SILENT":
            return  # into the context only: nothing is said
        if scheduling == "INTERRUPT" and self._replying:
            self._interrupt.set()
        turn = UserTurn("", False, 0.0, 0, tool_result=(call.name, response.get("response") or {}))
        self._turns.put_nowait(turn)

    def _user_activity(self) -> None:
        """The user started speaking or typing: interrupt the reply unless told not to."""
        if self._setup.interrupts:
            self._interrupt_reply()

    def _interrupt_reply(self) -> None:
        if self._replying:
            self._interrupt.set()
            call = self._pending_call
            if call is not None and call.response is not None and not call.response.done():
                call.response.set_result(None)

    def _heard(self, speech_seconds: float) -> str:
        return spoken_input_text(speech_seconds, self._setup.vocabulary)

    def _queue_turn(self, text: str, *, spoken: bool) -> None:
        self._turns.put_nowait(UserTurn(text, spoken, self._audio_seconds, self._video_frames))
        self._audio_seconds, self._video_frames = 0.0, 0

    # --- resumption -----------------------------------------------------------------------

    async def start_resumption(self) -> None:
        """With `sessionResumption` in the setup: a first handle, right after setupComplete,
        so that a connection lost before its first turn can already be resumed."""
        if self._setup.resumption:
            await self._send_resumable_update()

    async def run_resumption_updates(self) -> None:
        """A handle whenever input was consumed while the model is idle (at most every
        `resumption_update_interval_seconds`); the model task sends the updates that go
        with a turn. Runs until cancelled."""
        if not self._setup.resumption:
            return
        while True:
            await self._consumed.wait()
            self._consumed.clear()
            if self._idle and self._log.last_index > self._reported_index:
                await self._send_resumable_update()
            await asyncio.sleep(self._config.resumption_update_interval_seconds)

    @property
    def model(self) -> str:
        return self._setup.model

    @property
    def capped(self) -> bool:
        """Whether a session duration cap can apply (not with contextWindowCompression)."""
        return not self._setup.compression

    @property
    def _idle(self) -> bool:
        # Queued turns are not in the history yet and calls cannot be resumed: a snapshot now
        # would lose them.
        return not self._replying and self._turns.empty() and not self._background_calls

    def state(self) -> SessionState:
        """What a handle issued now would restore."""
        return SessionState(
            history=tuple(self._history),
            client_text=tuple(self._client_text),
            audio_seconds=self._audio_seconds,
            video_frames=self._video_frames,
            # A copy: the live detector keeps changing.
            vad=copy.deepcopy(self._vad),
            explicit_activity_seconds=self._explicit_activity_seconds,
        )

    async def _send_resumable_update(self) -> None:
        log = self._log
        snapshot = Snapshot(
            conversation=log.conversation,
            connection=log.connection,
            last_index=log.last_index,
            records=len(log.conversation.records),
            state=self.state(),
        )
        update: dict[str, Any] = {"newHandle": self._handles.issue(snapshot), "resumable": True}
        if self._setup.transparent_resumption:
            # int64 in proto-JSON: a string.
            update["lastConsumedClientMessageIndex"] = str(log.last_index)
        self._reported_index = log.last_index
        await self._send({"sessionResumptionUpdate": update})

    # --- the model ------------------------------------------------------------------------

    async def run_model(self) -> None:
        """Answer queued turns one after the other, until cancelled."""
        while True:
            turn = await self._turns.get()
            self._interrupt.clear()
            self._replying = True
            try:
                await self._reply(turn)
            finally:
                self._replying = False
                self._pending_call = None
            self._stats.turns_completed += 1
            if self._setup.resumption and self._idle:
                await self._send_resumable_update()

    async def _reply(self, turn: UserTurn) -> None:
        prompt = self._prompt_tokens(turn)
        number = 1 + sum(1 for entry in self._history if entry.role == "model")
        earlier = tuple(self._history)
        if turn.tool_result is None:
            self._remember(Entry("user", turn.text))
        if self._setup.resumption:
            # As documented for the service: an empty handle while generating or calling.
            await self._send({"sessionResumptionUpdate": {"newHandle": "", "resumable": False}})
        if self._setup.transcription_only:
            await self._transcribe(turn, prompt)
            return
        if turn.spoken and self._setup.input_transcription:
            await self._send({"serverContent": {"inputTranscription": {"text": turn.text}}})
        if await self._pause(self._config.reply_delay_seconds):
            await self._finish(prompt, "", 0.0, interrupted=True)
            return
        tool_use = NO_TOKENS  # the function response the reply is made from, if any
        if turn.tool_result is not None:
            text = tool_reply_text(number, *turn.tool_result)
            tool_use = TokenCounts(text=text_tokens(compact_json(turn.tool_result[1])))
        else:
            trigger = None if turn.spoken else find_tool_call(turn.text, self._setup.function_names)
            if trigger is None:
                text = reply_text(number, turn.text, earlier, self._setup.system_instruction)
            elif trigger.name not in self._setup.blocking_functions:
                # Non-blocking: the call goes out and the turn ends; its response makes a turn.
                call = self._new_call(trigger, None)
                self._background_calls.append(call)
                await self._announce(call, trigger)
                await self._finish(prompt, "", 0.0, interrupted=False)
                return
            else:
                response = await self._call_tool(trigger)
                if response is None:
                    await self._finish(prompt, "", 0.0, interrupted=True)
                    return
                text = tool_reply_text(number, trigger.name, response)
                tool_use = TokenCounts(text=text_tokens(compact_json(response)))
        # With `usage_mid_turn` the prompt's usage goes out beside the first chunk.
        early = self._config.usage_mid_turn and self._setup.reports_usage
        sent, audio_seconds, interrupted = await self._stream(text, prompt if early else None)
        if early and sent:
            prompt = NO_TOKENS  # reported already
        await self._finish(prompt, sent, audio_seconds, interrupted=interrupted, tool_use=tool_use)

    def _new_call(self, trigger: ToolTrigger, response: asyncio.Future[Any] | None) -> _PendingCall:
        self._stats.tool_calls += 1
        call_id = f"call-{next(self._call_ids)}" if self._setup.call_ids else None
        return _PendingCall(call_id, trigger.name, response)

    async def _announce(self, call: _PendingCall, trigger: ToolTrigger) -> None:
        function_call: dict[str, Any] = {"name": trigger.name, "args": trigger.args}
        if call.id is not None:
            function_call = {"id": call.id, **function_call}
        await self._send({"toolCall": {"functionCalls": [function_call]}})

    async def _call_tool(self, trigger: ToolTrigger) -> Any:
        """A blocking call: the function's response, or None when the user interrupted it."""
        if self._interrupt.is_set():
            return None
        call = self._new_call(trigger, asyncio.get_running_loop().create_future())
        assert call.response is not None
        # Registered before it goes out, so that an interruption meanwhile resolves it.
        self._pending_call = call
        await self._announce(call, trigger)
        response = None if self._interrupt.is_set() else await call.response
        self._pending_call = None
        if response is None:
            self._stats.tool_call_cancellations += 1
            if call.id is not None:  # without ids there is nothing to name
                await self._send({"toolCallCancellation": {"ids": [call.id]}})
        return response

    async def _stream(
        self, text: str, early_prompt: TokenCounts | None = None
    ) -> tuple[str, float, bool]:
        """Send the reply chunk by chunk: (text sent, seconds of audio sent, interrupted).
        `early_prompt`: usage reported beside the first chunk."""
        sent: list[str] = []
        audio_seconds = 0.0
        for piece in chunks(text, self._config.reply_chunk_chars):
            if await self._pause(self._config.reply_chunk_interval_seconds):
                return "".join(sent), audio_seconds, True
            usage: dict[str, Any] = {}
            if early_prompt is not None and not sent:
                usage = {"usageMetadata": usage_metadata(early_prompt, NO_TOKENS)}
            if self._setup.response_modality == "TEXT":
                await self._send(
                    {"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}, **usage}
                )
            else:
                seconds = len(piece) * self._config.speech_seconds_per_char
                audio = {
                    "mimeType": OUTPUT_MIME_TYPE,
                    "data": encode_base64(self._voice.render(seconds)),
                }
                await self._send(
                    {"serverContent": {"modelTurn": {"parts": [{"inlineData": audio}]}}, **usage}
                )
                audio_seconds += seconds
                if self._setup.response_modality == "VIDEO":
                    # The avatar shows the same speech (Vertex: lips aligned with the voice).
                    video = self._avatar.chunk(seconds)
                    self._stats.video_frames_sent += frames_for(seconds)
                    await self._send(
                        {"serverContent": {"modelTurn": {"parts": [{"inlineData": video}]}}}
                    )
                if self._setup.output_transcription:
                    await self._send({"serverContent": {"outputTranscription": {"text": piece}}})
            sent.append(piece)
        return "".join(sent), audio_seconds, False

    async def _finish(
        self,
        prompt: TokenCounts,
        sent: str,
        audio_seconds: float,
        *,
        interrupted: bool,
        tool_use: TokenCounts = NO_TOKENS,
    ) -> None:
        if self._setup.response_modality == "TEXT":
            candidates = TokenCounts(text=text_tokens(sent))
        else:
            candidates = TokenCounts(audio=audio_tokens(audio_seconds))
        if interrupted:
            self._stats.interruptions += 1
            await self._send({"serverContent": {"interrupted": True}})
        else:
            await self._send({"serverContent": {"generationComplete": True}})
        await self._turn_complete(prompt, candidates, tool_use)
        # What the user heard is what the model remembers, as with the service.
        self._remember(Entry("model", sent))

    async def _turn_complete(
        self, prompt: TokenCounts, candidates: TokenCounts, tool_use: TokenCounts = NO_TOKENS
    ) -> None:
        message: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if self._setup.reports_usage:
            message["usageMetadata"] = usage_metadata(prompt, candidates, tool_use)
        await self._send(message)

    async def _transcribe(self, turn: UserTurn, prompt: TokenCounts) -> None:
        """A transcription-only model's turn: what it heard, as text, and nothing said."""
        text = ""
        if turn.spoken:
            text = turn.text
            await self._send({"serverContent": {"inputTranscription": {"text": text}}})
        # Billed for what it heard (the audio), and the text it wrote.
        await self._turn_complete(
            TokenCounts(audio=prompt.audio, video=prompt.video), TokenCounts(text=text_tokens(text))
        )

    async def _pause(self, seconds: float) -> bool:
        """Wait between chunks; True as soon as the reply is interrupted."""
        if seconds <= 0 or self._interrupt.is_set():
            return self._interrupt.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self._interrupt.wait()
        except TimeoutError:
            return False
        return True

    def _prompt_tokens(self, turn: UserTurn) -> TokenCounts:
        typed = 0 if turn.spoken else text_tokens(turn.text)
        return TokenCounts(
            text=text_tokens(self._setup.system_instruction) + self._history_tokens + typed,
            audio=audio_tokens(turn.audio_seconds),
            video=turn.video_frames * self._setup.video_tokens_per_frame,
        )

    def _remember(self, entry: Entry) -> None:
        self._history.append(entry)
        self._history_tokens += text_tokens(entry.text)


def _message(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolViolation(1007, INVALID_ARGUMENT)
    return value


def _sample_rate(mime_type: object) -> int:
    match = _RATE.search(str(mime_type or ""))
    rate = int(match.group(1)) if match else DEFAULT_INPUT_SAMPLE_RATE
    if not 1_000 <= rate <= 192_000:
        raise ProtocolViolation(1007, f"Unsupported audio sample rate: {rate}")
    return rate
