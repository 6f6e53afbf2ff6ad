"""WebSocket data frames built by hand, for the fast lane (`app/relay/fast_lane.py`).

A relayed frame is one unfragmented text or binary message without extensions, and RFC 6455
(section 5.2) makes its header a few fixed bytes. `websockets` builds the same bytes through a
`Frame` object, a `BytesIO` and, on the client side, a masking key from `secrets.token_bytes`:
one `getrandom(2)` system call per frame (5.6 % of the relay's CPU in the profile of
docs/performance.md). Here masking keys come from a pool filled from `os.urandom` 1,024 keys
at a time: just as unpredictable (what RFC 6455 section 10.3 asks of them), one system call
per thousand frames.

Control frames, fragmented messages and compressed connections never come here: the
`websockets` protocols send those.
"""

from __future__ import annotations

import os
import struct

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


def _header(opcode: int, length: int, mask_bit: int) -> bytes:
    first = _FIN | opcode
    if length < 126:
        return _SHORT.pack(first, mask_bit | length)
    if length < 0x10000:
        return _MEDIUM.pack(first, mask_bit | 126, length)
    return _LONG.pack(first, mask_bit | 127, length)


def server_frame(payload: bytes, opcode: int) -> bytes:
    """A whole unmasked data frame (server to client)."""
    return _header(opcode, len(payload), 0) + payload


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
    return _header(opcode, len(payload), _MASKED) + mask + apply_mask(payload, mask)
