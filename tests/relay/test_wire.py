"""Frames built by hand (app/relay/wire.py) are the frames `websockets` reads: every length
class of RFC 6455's header, masked and not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from app.relay.wire import BINARY, TEXT, MaskKeys, client_frame, mask_keys, server_frame

# Around each boundary of the header's length field: 7 bits, 16 bits, 64 bits.
BOUNDARIES = [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 0x10001]


def _pair() -> tuple[ClientProtocol, ServerProtocol]:
    """A client and a server protocol past their opening handshake, in memory."""
    client = ClientProtocol(parse_uri("ws://relay.test/v1/live"), max_size=None)
    server = ServerProtocol(max_size=None)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
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
