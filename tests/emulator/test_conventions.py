"""The emulator's documented conventions, checked on its pure building blocks."""

from __future__ import annotations

import pytest

from app.emulator.replies import Entry, find_tool_call
from app.emulator.resumption import Conversation, HandleStore, SessionState, Snapshot
from app.emulator.tokens import TokenCounts, audio_tokens, text_tokens, usage_metadata
from app.emulator.vad import ActivityEnded, ActivityStarted, VadSettings, VoiceActivityDetector
from app.emulator.wire import decode_base64, duration_text, normalize
from app.protocol.errors import ProtocolViolation, close_reason
from tests.support.audio import silence, speech


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("abc", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_text_costs_one_token_per_started_four_characters(text: str, tokens: int) -> None:
    assert text_tokens(text) == tokens


def test_audio_costs_25_tokens_per_second_rounded_up() -> None:
    assert audio_tokens(1.0) == 25
    assert audio_tokens(1.1) == 28
    assert audio_tokens(0.04) == 1
    assert audio_tokens(0) == 0


def test_usage_metadata_uses_vertex_names_and_omits_empty_modalities() -> None:
    usage = usage_metadata(TokenCounts(text=10, audio=25), TokenCounts(audio=50))
    assert usage == {
        "promptTokenCount": 35,
        "candidatesTokenCount": 50,
        "totalTokenCount": 85,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 10},
            {"modality": "AUDIO", "tokenCount": 25},
        ],
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 50}],
    }


def test_a_declared_function_named_as_a_whole_word_is_called_with_the_first_json_object() -> None:
    names = ["get_weather", "get_time"]
    trigger = find_tool_call('please get_time {"zone": "UTC"} and get_weather {"x": 1}', names)
    assert trigger is not None
    assert (trigger.name, trigger.args) == ("get_time", {"zone": "UTC"})
    assert find_tool_call("forget_weather_report", names) is None
    assert find_tool_call("get_weather {broken", names) == find_tool_call("get_weather", names)


def test_field_names_are_camel_cased_but_user_data_keeps_its_keys() -> None:
    message = normalize(
        {
            "tool_response": {
                "function_responses": [{"id": "1", "response": {"temp_c": 1, "nested_key": {}}}]
            },
            "tools": [
                {
                    "function_declarations": [
                        {"parameters": {"properties": {"city_name": {"max_length": 3}}}}
                    ]
                }
            ],
        }
    )
    assert message == {
        "toolResponse": {
            "functionResponses": [{"id": "1", "response": {"temp_c": 1, "nested_key": {}}}]
        },
        "tools": [
            {
                "functionDeclarations": [
                    {"parameters": {"properties": {"city_name": {"maxLength": 3}}}}
                ]
            }
        ],
    }


def test_both_base64_alphabets_with_or_without_padding_decode_alike() -> None:
    assert decode_base64("+/+/", "f") == decode_base64("-_-_", "f") == b"\xfb\xff\xbf"
    assert decode_base64("AA", "f") == decode_base64("AA==", "f") == b"\x00"
    with pytest.raises(ProtocolViolation):
        decode_base64("not base64!", "f")


def test_durations_are_written_as_proto_json() -> None:
    assert [duration_text(s) for s in (60, 0.5, 1.25, 0)] == ["60s", "0.5s", "1.25s", "0s"]


def test_close_reasons_are_cut_to_123_bytes_without_breaking_a_character() -> None:
    assert len(close_reason("é" * 100).encode()) <= 123
    assert close_reason("short") == "short"


def test_the_detector_honours_silence_duration_and_prefix_padding() -> None:
    detector = VoiceActivityDetector(VadSettings(silence_ms=200, prefix_padding_ms=100))
    # 50 ms of speech is less than the padding: not an activity.
    assert detector.feed(speech(0.05) + silence(0.3), 16_000) == []
    events = detector.feed(speech(0.5) + silence(0.19), 16_000)
    assert events == [ActivityStarted()]
    assert detector.feed(silence(0.01), 16_000) == [ActivityEnded(0.5)]


def test_the_detector_reads_its_settings_from_setup() -> None:
    settings = VadSettings.from_setup(
        {
            "silenceDurationMs": 800,
            "prefixPaddingMs": 40,
            "startOfSpeechSensitivity": "START_SENSITIVITY_HIGH",
            "endOfSpeechSensitivity": "END_SENSITIVITY_HIGH",
        }
    )
    assert (settings.enabled, settings.silence_ms, settings.prefix_padding_ms) == (True, 800, 40)
    assert settings.threshold_rms < VadSettings().threshold_rms
    assert settings.hold_rms == settings.threshold_rms
    assert not VadSettings.from_setup({"disabled": True}).enabled


def test_unspecified_sensitivities_are_low_as_the_sdk_documents_for_vertex() -> None:
    low = VadSettings.from_setup(
        {
            "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
            "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
        }
    )
    assert VadSettings.from_setup({}) == low == VadSettings()
    # LOW end sensitivity: once speaking, quieter frames keep the activity going.
    assert low.hold_rms < low.threshold_rms


def test_a_low_end_sensitivity_keeps_a_fading_voice_going() -> None:
    # Speech that fades to a level between the hold and the start thresholds.
    quiet = bytes(speech(0.6))  # loud enough to start
    fading = b"".join(
        int(sample * 0.12).to_bytes(2, "little", signed=True)
        for sample in memoryview(speech(0.4)).cast("h")
    )
    low = VoiceActivityDetector(VadSettings(silence_ms=200))
    high = VoiceActivityDetector(
        VadSettings.from_setup(
            {"silenceDurationMs": 200, "endOfSpeechSensitivity": "END_SENSITIVITY_HIGH"}
        )
    )
    ended_low = [
        e for e in low.feed(quiet + fading + silence(0.3), 16_000) if isinstance(e, ActivityEnded)
    ]
    ended_high = [
        e for e in high.feed(quiet + fading + silence(0.3), 16_000) if isinstance(e, ActivityEnded)
    ]
    assert ended_low[0].speech_seconds > ended_high[0].speech_seconds


def test_audio_stream_end_ends_an_open_activity_at_once() -> None:
    detector = VoiceActivityDetector(VadSettings())
    assert detector.feed(speech(0.3), 16_000) == [ActivityStarted()]
    assert detector.end_of_stream() == ActivityEnded(0.3)
    assert detector.end_of_stream() is None


def test_handles_expire_after_their_time_to_live() -> None:
    now = [0.0]
    store = HandleStore(ttl_seconds=10, clock=lambda: now[0])
    snapshot = Snapshot(
        conversation=Conversation(),
        connection=1,
        last_index=3,
        records=0,
        state=SessionState(history=(Entry("user", "hi"),)),
    )
    handle = store.issue(snapshot)
    assert store.resume(handle) == snapshot
    now[0] = 10.5
    assert store.resume(handle) is None
    assert store.resume("unknown") is None


def test_the_handle_store_keeps_at_most_its_limit_dropping_the_oldest() -> None:
    store = HandleStore(ttl_seconds=60, max_handles=2)
    snapshot = Snapshot(Conversation(), 1, 0, 0, SessionState())
    first, second, third = (store.issue(snapshot) for _ in range(3))
    assert store.resume(first) is None
    assert store.resume(second) == store.resume(third) == snapshot
