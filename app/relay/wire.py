"""WebSocket data frames built by hand, for the fast lane (`app/relay/fast_lane.py`).

A relayed frame is one unfragmented text or binary message without extensions, and RFC 6455
(section 5.2) makes its header a few fixed bytes. `websockets` builds the same bytes through a
`Frame` object, a `BytesIO` and, on the client side, a masking key from `secrets.token_bytes`:
one `getrandom(2)` system call per frame (5.6 % of the relay's CPU in the profile of
docs/performance.md). Here masking keys come from a pool filled from `os.urandom` 1,024 keys
at a time: just as unpredictable (what RFC 6455 section 10.3 asks of them), one system call
per thousand frames.

Control frames, fragmented messages and compressed connections never come here: the
`websockets` protocols send those. `FrameReader` is the reading side: whole simple frames
read here, everything else by the protocol.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.protocol import OPEN as _OPEN
from websockets.protocol import Protocol
from websockets.streams import StreamReader

if TYPE_CHECKING:
    from app.relay.client.input_budget import InputHolder

try:  # the C implementation `websockets` itself uses when it is built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships wheels with it
    from websockets.utils import apply_mask

TEXT = 0x1
BINARY = 0x2
_FIN = 0x80
_MASKED = 0x80

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")

_POOL_KEYS = 1024


def server_frame(payload: bytes, opcode: int) -> bytes:
    """A whole unmasked data frame (server to client)."""
    length = len(payload)
    first = _FIN | opcode
    if length < 126:
        return _SHORT.pack(first, length) + payload
    if length < 0x10000:
        return _MEDIUM.pack(first, 126, length) + payload
    return _LONG.pack(first, 127, length) + payload


class MaskKeys:
    """Masking keys for client frames, taken from a pool of `os.urandom` bytes."""

    __slots__ = ("_offset", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._offset = 0

    def next(self) -> bytes:
        offset = self._offset
        if offset >= len(self._pool):
            self._pool = os.urandom(4 * _POOL_KEYS)
            offset = 0
        self._offset = offset + 4
        return self._pool[offset : offset + 4]


# One pool for the process: keys are never reused, whichever connection takes them.
mask_keys = MaskKeys()


def client_frame(payload: bytes, opcode: int) -> bytes:
    """A whole masked data frame (client to server)."""
    mask = mask_keys.next()
    length = len(payload)
    first = _FIN | opcode
    if length < 126:
        head = _SHORT.pack(first, _MASKED | length)
    elif length < 0x10000:
        head = _MEDIUM.pack(first, _MASKED | 126, length)
    else:
        head = _LONG.pack(first, _MASKED | 127, length)
    return head + mask + apply_mask(payload, mask)


# A data frame's first byte when it is whole (FIN), uncompressed (no RSV bit) and text or
# binary: the only frames `FrameReader` reads itself. (An uncompressed message is one of
# these whatever the extensions: permessage-deflate marks compressed ones with RSV1.)
_SIMPLE_FIRST_BYTES = frozenset((_FIN | TEXT, _FIN | BINARY))
_LENGTH_64 = struct.Struct("!Q")
# Reads of a partly received frame smaller than this are gathered into chunks of about this size.
_CHUNK = 64 * 1024


_FRAME_LOOP = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


def at_frame_boundary(protocol: Protocol) -> bool:
    """Whether `protocol`'s parser waits for the first byte of a frame and holds no byte of
    one: the moment a `FrameReader` may take the stream over. The parser is then suspended
    in its frame loop's end-of-stream check (`Protocol.parse` in `StreamReader.at_eof`); in
    the middle of a frame, or of the HTTP handshake, it is suspended anywhere else.
    (tests/relay/test_wire.py holds this to the pinned `websockets`.)"""
    if protocol.reader.buffer:
        return False
    outer: Any = protocol.parser  # a generator: typeshed types its gi_yieldfrom as an Iterator
    inner = outer.gi_yieldfrom
    while inner is not None and inner.gi_yieldfrom is not None:
        outer, inner = inner, inner.gi_yieldfrom
    return inner is not None and outer.gi_code is _FRAME_LOOP and inner.gi_code is _AT_EOF


class FrameReader:
    """Cuts a connection's byte stream into whole frames in front of its `websockets` protocol.

    `websockets` parses each frame through a generator, a stream reader and a `Frame` object:
    the largest share of a relayed frame's Python work after the fast lane (docs/performance.md).
    The frames a live session is made of are simple: one whole text or binary frame per
    message, uncompressed. This reads those itself and hands every other frame to the
    protocol, whole, so the protocol's parser is always at a frame boundary and keeps every
    rule it has: control frames, fragments, size limits, masking, and the closing handshake.

    It starts at a frame boundary (`at_frame_boundary`). A frame is read here only while the
    protocol is open and no fragmented message is in progress; its length is held to the
    protocol's `max_message_size` before its payload is waited for. A header that claims more
    hands the rest of the stream to the protocol, which refuses it as it always did (1009).
    Bytes held between reads are at most one frame under that limit, as in the protocol's own
    buffer.
    """

    __slots__ = ("_bypass", "_held", "_holder", "_mask_bit", "_pieces", "_protocol", "_wanted")

    def __init__(
        self, protocol: Protocol, *, masked: bool, holder: InputHolder | None = None
    ) -> None:
        # The protocol's parser stands at a frame boundary here (`at_frame_boundary`), inside
        # the handshake's parse generator, whose frame keeps the parsed request (server) or
        # response (client), headers and all, for the connection's life: 2 KB a leg. The bare
        # frame loop it is suspended in is the same parser without that frame.
        parser = Protocol.parse(protocol)
        next(parser)
        protocol.parser = parser
        self._protocol = protocol
        # Frames from a client are masked (RFC 6455 section 5.3): the header's mask bit.
        self._mask_bit = _MASKED if masked else 0
        # The start of a frame not yet whole, as the reads that brought it: a 1 MiB setup
        # arriving in many reads is joined once, when whole. (Growing one bytearray instead
        # reallocated it at every read, and glibc kept twice the held setups' size after a
        # burst of them: tests/reliability/test_memory_bounds.py.) Small reads are gathered
        # into chunks of up to `_CHUNK` bytes, so a peer that trickles a frame a few bytes a
        # read costs about the bytes it sent, not an object per read.
        self._pieces: list[bytes | bytearray] = []
        self._held = 0  # bytes in `_pieces`
        self._wanted = 0  # the bytes `_pieces` must reach before they are read again
        self._bypass = False  # the protocol reads everything from now on
        # Charged with `_held`, when the bytes are a client's (app/relay/client/input_budget.py).
        self._holder = holder

    def feed(
        self,
        data: bytes,
        simple: Callable[[int, bytes], None],
        other: Callable[[bytes], None],
    ) -> None:
        """Read `data`: each simple frame goes to `simple(opcode, payload)` (unmasked), any
        other bytes to `other`, in stream order."""
        if self._bypass:
            other(data)
            return
        pieces = self._pieces
        if pieces:
            last = pieces[-1]
            if len(data) >= _CHUNK:
                pieces.append(data)
            elif isinstance(last, bytearray) and len(last) < _CHUNK:
                last += data
            else:
                pieces.append(bytearray(data))
            self._held += len(data)
            if self._holder is not None:
                self._holder.charge(len(data))
            if self._held < self._wanted:
                return
            buffer = b"".join(pieces)
            self._pieces = []
        else:
            buffer = data
        size = len(buffer)
        offset = 0
        protocol = self._protocol
        mask_bit = self._mask_bit
        # Set at admission, never while a read is handled: read once.
        limit = protocol.max_message_size
        wanted = 2  # bytes the frame at `offset` needs before anything can be decided
        while size - offset >= wanted:
            first = buffer[offset]
            second = buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                wanted = 4
                if size - offset < wanted:
                    break
                length = (buffer[start] << 8) | buffer[start + 1]
                start += 2
            elif length == 127:
                wanted = 10
                if size - offset < wanted:
                    break
                length = _LENGTH_64.unpack_from(buffer, start)[0]
                start += 8
            if limit is not None and length > limit:
                # The protocol refuses it (1009) from the header, without the payload.
                self._hand_over()
                other(buffer[offset:])
                return
            has_mask = second & _MASKED
            end = start + (4 if has_mask else 0) + length
            if end > size:
                wanted = end - offset
                break
            if (
                first in _SIMPLE_FIRST_BYTES
                and has_mask == mask_bit
                and protocol.state is _OPEN
                and protocol.current_size is None
            ):
                if has_mask:
                    mask = buffer[start : start + 4]
                    simple(first & 0x0F, apply_mask(buffer[start + 4 : end], mask))
                else:
                    simple(first & 0x0F, buffer[start:end])
            else:
                other(buffer[offset:end])
                if protocol.state is not _OPEN:
                    # Closing or failed: the protocol reads (or discards) the rest itself.
                    self._hand_over()
                    if end < size:
                        other(buffer[end:])
                    return
            offset = end
            wanted = 2
        held = size - offset
        if held:
            self._pieces = [buffer[offset:]]  # the same object when offset is 0
            self._wanted = wanted
        if held != self._held:  # a frame was started or finished: seldom for small frames
            if self._holder is not None:
                self._holder.charge(held - self._held)
            self._held = held

    def _hand_over(self) -> None:
        """The protocol reads everything from now on; what was held here goes to it."""
        self._bypass = True
        self.release()

    def release(self) -> None:
        """Let go of a partly received frame (the connection is gone, or was shed)."""
        self._pieces = []
        if self._holder is not None:
            self._holder.charge(-self._held)
        self._held = 0

    def flush(self, other: Callable[[bytes], None]) -> None:
        """Hand a partly received frame to the protocol (at the end of the stream, so it sees
        the same bytes it would have)."""
        if self._pieces:
            partial, self._pieces = b"".join(self._pieces), []
            self.release()
            other(partial)
