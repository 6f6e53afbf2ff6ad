"""Frames built by hand (app/relay/wire.py) are the frames `websockets` reads: every length
class of RFC 6455's header, masked and not."""

from __future__ import annotations

import gc
import itertools
import tracemalloc
import weakref
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from app.relay.wire import (
    BINARY,
    TEXT,
    FrameReader,
    MaskKeys,
    at_frame_boundary,
    client_frame,
    mask_keys,
    server_frame,
)

# Around each boundary of the header's length field: 7 bits, 16 bits, 64 bits.
BOUNDARIES = [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 0x10001]


def _handshake() -> tuple[ClientProtocol, ServerProtocol, Request, Response]:
    """A client and a server protocol past their opening handshake, in memory, and the
    request and response they exchanged."""
    client = ClientProtocol(parse_uri("ws://relay.test/v1/live"), max_size=None)
    server = ServerProtocol(max_size=None)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    (response,) = client.events_received()
    assert isinstance(response, Response)
    return client, server, request, response


def _pair() -> tuple[ClientProtocol, ServerProtocol]:
    client, server, _, _ = _handshake()
    return client, server


def _read(frame_bytes: bytes, reader: Protocol) -> Frame:
    reader.receive_data(frame_bytes)
    (frame,) = reader.events_received()
    assert isinstance(frame, Frame)
    return frame


@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(BOUNDARIES).map(
            lambda n: bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        ),
    ),
    opcode=st.sampled_from([TEXT, BINARY]),
)
def test_frames_read_back_as_sent(payload: bytes, opcode: int) -> None:
    expected = Opcode(opcode)
    client, server = _pair()
    # A server reads what the relay sends upstream (masked), a client what it sends clients.
    for frame_bytes, reader in (
        (client_frame(payload, opcode), server),
        (server_frame(payload, opcode), client),
    ):
        if opcode == TEXT and not _utf8(payload):
            continue  # a text frame must hold UTF-8; the relay only sends decoded text
        frame = _read(frame_bytes, reader)
        assert frame.opcode is expected
        assert frame.fin
        assert bytes(frame.data) == payload


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_masking_keys_are_fresh_and_the_pool_refills() -> None:
    keys = MaskKeys()
    taken = [keys.next() for _ in range(3000)]  # three pools' worth
    assert all(len(key) == 4 for key in taken)
    # 3,000 draws of 32 random bits: a repeat is a one-in-a-thousand event, and a pool that
    # did not refill (or was reused) repeats over a thousand of them.
    assert len(set(taken)) > 2990


def test_a_masked_frame_does_not_carry_its_payload_in_clear() -> None:
    payload = b'{"realtimeInput":{"audio":{"data":"AAAA"}}}'
    framed = client_frame(payload, TEXT)
    assert payload not in framed
    assert mask_keys.next() != framed[2:6]  # the next key is another one


def test_the_parser_is_at_a_frame_boundary_only_between_frames() -> None:
    client = ClientProtocol(parse_uri("ws://relay.test/v1/live"), max_size=None)
    server = ServerProtocol(max_size=None)
    assert not at_frame_boundary(server)  # waiting for the HTTP request
    client, server = _pair()
    assert at_frame_boundary(server)
    assert at_frame_boundary(client)
    framed = client_frame(b"x" * 200, TEXT)  # 2 header bytes, 2 of length, 4 of mask
    server.receive_data(framed[:1])
    assert not at_frame_boundary(server)  # a byte held
    server.receive_data(framed[1:4])
    assert not server.reader.buffer  # header and length read, nothing held...
    assert not at_frame_boundary(server)  # ...but inside the frame
    server.receive_data(framed[4:])
    assert _messages_of(server.events_received()) == [("text", b"x" * 200)]
    assert at_frame_boundary(server)


def test_a_frame_reader_lets_go_of_the_handshake_and_the_parser_reads_on() -> None:
    """The handshake's parse generator keeps the request (server side) or the response
    (client side) for the connection's life; the reader restarts the parser without it."""
    client, server, request, response = _handshake()
    held: list[weakref.ref[object]] = [weakref.ref(request), weakref.ref(response)]
    del request, response
    gc.collect()
    assert all(ref() is not None for ref in held)  # the parsers' frames hold them
    FrameReader(server, masked=True)
    FrameReader(client, masked=False)
    gc.collect()
    assert [ref() for ref in held] == [None, None]
    # The restarted parsers still read every frame the readers hand them, control frames too.
    assert at_frame_boundary(server)
    assert at_frame_boundary(client)
    assert _read(Frame(Opcode.PING, b"p").serialize(mask=True), server).data == b"p"
    close = _read(Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=False), client)
    assert close.opcode is Opcode.CLOSE


def _stream_frames(frames: list[Frame]) -> bytes:
    """Frames as a client sends them (masked), through websockets' own serializer."""
    return b"".join(frame.serialize(mask=True) for frame in frames)


_FRAMES = st.lists(
    st.one_of(
        st.builds(lambda data: [Frame(Opcode.TEXT, data.encode())], st.text(max_size=200)),
        st.builds(lambda data: [Frame(Opcode.BINARY, data)], st.binary(max_size=300)),
        st.builds(lambda data: [Frame(Opcode.PING, data)], st.binary(max_size=20)),
        st.builds(
            lambda parts: [
                Frame(Opcode.BINARY if i == 0 else Opcode.CONT, part, fin=i == len(parts) - 1)
                for i, part in enumerate(parts)
            ],
            st.lists(st.binary(max_size=50), min_size=2, max_size=4),
        ),
    ),
    max_size=12,
).map(lambda groups: [frame for group in groups for frame in group])


def _messages_of(events: Sequence[object]) -> list[tuple[str, bytes]]:
    """Whole messages (fragments joined) and pings, from a protocol's events."""
    messages: list[tuple[str, bytes]] = []
    fragments: list[bytes] = []
    for event in events:
        assert isinstance(event, Frame)
        if event.opcode is Opcode.PING:
            messages.append(("ping", bytes(event.data)))
            continue
        fragments.append(bytes(event.data))
        if event.fin:
            kind = "text" if event.opcode is Opcode.TEXT else "data"
            messages.append((kind, b"".join(fragments)))
            fragments = []
    return messages


@given(frames=_FRAMES, cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8))
def test_a_frame_reader_reads_what_the_protocol_reads(frames: list[Frame], cuts: list[int]) -> None:
    """Any mix of frames, cut into chunks anywhere: the messages read through a FrameReader
    are the protocol's own, in order, and what it answers (pongs) is the same."""
    stream = _stream_frames(frames)
    _, alone = _pair()
    alone.receive_data(stream)
    expected = _messages_of(alone.events_received())

    _, server = _pair()
    reader = FrameReader(server, masked=True)
    events: list[object] = []

    def simple(opcode: int, payload: bytes) -> None:
        events.append(Frame(Opcode(opcode), payload))

    def other(data: bytes) -> None:
        server.receive_data(data)
        events.extend(server.events_received())

    bounds = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(bounds):
        reader.feed(stream[start:end], simple, other)
    assert _messages_of(events) == expected
    assert b"".join(server.data_to_send()) != b"" or not any(
        frame.opcode is Opcode.PING for frame in frames
    )
    assert at_frame_boundary(server)


def test_a_frame_over_the_limit_is_refused_by_the_protocol_from_its_header() -> None:
    _, server = _pair()
    server.max_message_size = 1000
    reader = FrameReader(server, masked=True)
    simple_frames: list[bytes] = []
    header_only = client_frame(b"x" * 5000, BINARY)[:8]  # no payload sent at all
    reader.feed(header_only, lambda _, payload: simple_frames.append(payload), server.receive_data)
    assert simple_frames == []
    assert server.close_sent is not None
    assert server.close_sent.code == 1009


def test_an_unmasked_client_frame_goes_to_the_protocol_which_fails_it() -> None:
    _, server = _pair()
    reader = FrameReader(server, masked=True)
    simple_frames: list[bytes] = []
    reader.feed(
        server_frame(b"hello", TEXT),
        lambda _, payload: simple_frames.append(payload),
        server.receive_data,
    )
    assert simple_frames == []
    assert server.close_sent is not None
    assert server.close_sent.code == 1002


def test_a_whole_frame_inside_a_fragmented_message_is_the_protocol_s_to_refuse() -> None:
    """RFC 6455 section 5.4: only control frames may come between fragments."""
    stream = _stream_frames(
        [Frame(Opcode.BINARY, b"first", fin=False), Frame(Opcode.TEXT, b"intruder")]
    )
    _, server = _pair()
    reader = FrameReader(server, masked=True)
    simple_frames: list[bytes] = []
    reader.feed(stream, lambda _, payload: simple_frames.append(payload), server.receive_data)
    assert simple_frames == []
    assert server.close_sent is not None
    assert server.close_sent.code == 1002


def test_a_frame_trickled_a_byte_a_read_is_held_at_about_its_size() -> None:
    """A client (or upstream) that sends a frame a byte per TCP segment must not make the relay
    hold a Python object per byte: ~40 times the bytes received."""
    _, server = _pair()
    frame = client_frame(b"x" * 100_000, TEXT)
    reader = FrameReader(server, masked=True)
    got: list[bytes] = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(len(frame) - 1):
            reader.feed(frame[index : index + 1], lambda _op, data: got.append(data), _refuse)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not got
    assert held < 2 * len(frame), held
    reader.feed(frame[-1:], lambda _op, data: got.append(data), _refuse)
    assert got == [b"x" * 100_000]


def _refuse(data: bytes) -> None:
    raise AssertionError(f"handed to the protocol: {data[:20]!r}")
