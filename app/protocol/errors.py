"""How a refused client message ends a connection: a close code and a reason."""

from __future__ import annotations

MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: 125 bytes of close payload, 2 of them the code


class ProtocolViolation(Exception):
    """A client message that is refused: the connection closes with `code` and `reason`.

    `reason` is whole, for logs; each side cuts it to a close frame its own way (the emulator
    as the service does, `close_reason`; the relay with a mark, `closes.truncate_reason`)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_reason(text: str) -> str:
    """`text` cut to what a close frame can carry (123 bytes of UTF-8, RFC 6455)."""
    encoded = text.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return text
    return encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
