"""Connections that answer pings late or never, for the `pong_delay_seconds` and
`never_pong` faults.

websockets answers a ping inside its sans-I/O protocol, before any application code runs,
and offers no hook to hold the answer. These classes take the pong frame out of the
protocol's output and send it later themselves (or never). They are used only when such a
fault is configured; otherwise the emulator runs websockets' stock connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol


class _PongHoldingProtocol(ServerProtocol):
    hold_pong: Callable[[bytes], None]

    def send_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            self.hold_pong(bytes(frame.data))
        else:
            super().send_frame(frame)

    def send_held_pong(self, data: bytes) -> None:
        super().send_frame(Frame(Opcode.PONG, data))


def pong_fault_connection(pong_delay_seconds: float | None) -> type[ServerConnection]:
    """A connection class answering pings after `pong_delay_seconds`; None: never."""

    class PongFaultConnection(ServerConnection):
        # Cleared for connections the faults do not apply to (`Faults.fault_connections`).
        holds_pongs = True

        def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
            # The server builds a stock protocol; giving it the pong-holding behaviour in place
            # keeps every setting the server chose for it.
            protocol.__class__ = _PongHoldingProtocol
            assert isinstance(protocol, _PongHoldingProtocol)
            protocol.hold_pong = self._hold_pong
            self._holding_protocol = protocol
            super().__init__(protocol, server, **kwargs)

        def _hold_pong(self, data: bytes) -> None:
            if not self.holds_pongs:
                # Answered at once, in the output websockets is about to flush anyway.
                self._holding_protocol.send_held_pong(data)
            elif pong_delay_seconds is not None:
                self.loop.call_later(pong_delay_seconds, self._send_late_pong, data)

        def _send_late_pong(self, data: bytes) -> None:
            # A pong due after the connection closed is simply not sent.
            if self._holding_protocol.state is State.OPEN:
                self._holding_protocol.send_held_pong(data)
                self.send_data()

    return PongFaultConnection
