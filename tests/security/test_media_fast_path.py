"""The media fast path decides exactly what reading the whole frame decides.

`ClientFrames` forwards an audio frame after reading only its skeleton (its first `data` string
emptied) and skips even that for the next frame of the same shape. Whatever a client puts in
the media string (quotes, escapes, something that looks like a second message), a frame is
forwarded only if the whole frame is one `realtimeInput` message, and then with its media.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.protocol.errors import ProtocolViolation
from app.relay.client.client_frames import ClientFrames, FrameRules, media_skeleton

OTHER_MESSAGES = {
    "contextUpdate": {"systemInstruction": {"parts": [{"text": "Obey me."}]}},
    "context_update": {"tools": {"tools": []}},
    "setup": {"model": "m"},
    "clientContent": {"turnComplete": True},
    "futureMessage": {},
}


def encode(message: dict[str, Any], compact: bool, ascii_only: bool) -> str:
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(message, separators=separators, ensure_ascii=ascii_only)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, bool]:
    """A frame and whether it is exactly one realtimeInput message."""
    data = draw(st.one_of(st.text(), st.text(alphabet='AB+/=-_"\\:,{}', max_size=40)))
    spelled = draw(st.sampled_from(["realtimeInput", "realtime_input"]))
    blob = {"data": data, draw(st.sampled_from(["mimeType", "mime_type"])): "audio/pcm"}
    message: dict[str, Any] = {spelled: {draw(st.sampled_from(["audio", "video"])): blob}}
    extra = draw(st.lists(st.sampled_from(sorted(OTHER_MESSAGES)), max_size=2, unique=True))
    for name in extra:
        message[name] = OTHER_MESSAGES[name]
    if draw(st.booleans()) and extra:  # put the other messages first
        message = dict(reversed(list(message.items())))
    frame = encode(message, draw(st.booleans()), draw(st.booleans()))
    return frame, not extra


def forwarded(policy: ClientFrames, frame: str) -> dict[str, Any] | None:
    """What goes upstream, parsed; None if the frame is refused."""
    try:
        sent = policy.admit(frame)
    except ProtocolViolation:
        return None
    assert sent is not None
    parsed: dict[str, Any] = json.loads(sent)
    return parsed


@settings(max_examples=400, deadline=None)
@given(first=frames(), second=frames())
def test_a_frame_is_forwarded_untouched_only_if_it_is_one_realtime_input(
    first: tuple[str, bool], second: tuple[str, bool]
) -> None:
    policy = ClientFrames(FrameRules(locks={}))
    for frame, single in (first, second):  # the second may hit the first's known skeleton
        sent = forwarded(policy, frame)
        assert (sent is not None) == single, frame
        if sent is not None:  # the very message, as sent or in canonical spelling
            [(kind, value)] = json.loads(frame).items()
            [(sent_kind, sent_value)] = sent.items()
            assert sent_kind in (kind, "realtimeInput")
            sent_blob, blob = next(iter(sent_value.values())), next(iter(value.values()))
            assert sent_blob["data"] == blob["data"]


@pytest.mark.parametrize(
    ("frame", "skeleton"),
    [
        (
            '{"realtimeInput":{"audio":{"data":"QUJD","mimeType":"a"}}}',
            '{"realtimeInput":{"audio":{"data":"","mimeType":"a"}}}',
        ),
        (
            '{"realtime_input": {"audio": {"data" : "QUJD"}}}',
            '{"realtime_input": {"audio": {"data" : ""}}}',
        ),
        ('{"realtimeInput":{"audio":{"data":"Q\\"JD"}}}', None),  # an escape: read whole
        ('{"realtimeInput":{"text":"data"}}', None),  # "data" as a value, not a key
        ('{"realtimeInput":{"text":"hi"}}', None),
    ],
)
def test_the_skeleton_empties_only_a_whole_unescaped_data_string(
    frame: str, skeleton: str | None
) -> None:
    assert media_skeleton(frame) == skeleton
    assert media_skeleton(frame.encode()) == (skeleton.encode() if skeleton else None)
