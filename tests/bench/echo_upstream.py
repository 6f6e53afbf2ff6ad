"""A lean stand-in for the emulator's load-test mode, so the load core is not the bottleneck.

Same contract as `EmulatorConfig(echo_audio=True)`: the first message is answered with
`setupComplete`, every `realtimeInput.audio` chunk at once with one binary frame carrying the
very same base64 string, anything else is ignored. A setup that asks for transparent resumption
(as the relay's does) is also answered, every `CONFIRM_EVERY` messages, with the
`sessionResumptionUpdate` Vertex sends as it consumes input: without it the relay would keep
every audio frame for replay, up to its buffer bound, which no real session does. It is the
`websockets` sans-I/O server protocol driven from `asyncio.Protocol` callbacks under uvloop,
with a byte sniff instead of a JSON parse: on the benchmark machine it costs about a third of
the emulator's CPU per echoed frame, which is what lets one core carry the load generator and
the upstream at 300-400 sessions. `python -m tests.bench.run --upstream emulator` measures
against the emulator.

    python -m tests.bench.echo_upstream --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import uvloop
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

SETUP_COMPLETE = b'{"setupComplete":{}}'
ECHO_HEAD = (
    b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
    b'{"mimeType":"audio/pcm;rate=24000","data":"'
)
ECHO_TAIL = b'"}}]}}}'
AUDIO_MARKER = b'"realtimeInput":{"audio":'
DATA_MARKER = b'"data":"'
TRANSPARENT_MARKER = b'"transparent":true'
CONFIRM_EVERY = 25  # messages: one second of 40 ms audio


def echo_of(message: bytes) -> bytes | None:
    """The echo frame for an audio message, None for anything else."""
    if AUDIO_MARKER not in message:
        return None
    start = message.find(DATA_MARKER)
    if start < 0:
        return None
    start += len(DATA_MARKER)
    end = message.find(b'"', start)
    return None if end < 0 else ECHO_HEAD + message[start:end] + ECHO_TAIL


def resumption_update(consumed: int) -> bytes:
    """A resumable handle covering the first `consumed` messages after the setup."""
    return (
        b'{"sessionResumptionUpdate":{"newHandle":"echo-%d","resumable":true,'
        b'"lastConsumedClientMessageIndex":"%d"}}' % (consumed, consumed)
    )


class EchoConnection(asyncio.Protocol):
    def __init__(self, *, never_confirm: bool = False) -> None:
        self._never_confirm = never_confirm  # a model that sends no resumption updates
        self._protocol = ServerProtocol(max_size=16 * 1024 * 1024)
        self._transport: asyncio.Transport | None = None
        self._set_up = False
        self._confirms = False  # the setup asked for transparent resumption
        self._consumed = 0  # messages after the setup (the setup is 0, per connection)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop does not subclass it

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Request):
                protocol.send_response(protocol.accept(event))
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._message(bytes(event.data))
        self._flush()

    def eof_received(self) -> None:
        self._protocol.receive_eof()
        self._flush()

    def _message(self, message: bytes) -> None:
        if self._protocol.state is not OPEN:
            return
        if not self._set_up:
            self._set_up = True
            self._confirms = TRANSPARENT_MARKER in message and not self._never_confirm
            self._protocol.send_binary(SETUP_COMPLETE)
            return
        echo = echo_of(message)
        if echo is not None:
            self._protocol.send_binary(echo)
        self._consumed += 1
        if self._confirms and self._consumed % CONFIRM_EVERY == 0:
            self._protocol.send_binary(resumption_update(self._consumed))

    def _flush(self) -> None:
        transport = self._transport
        assert transport is not None
        for data in self._protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._protocol.close_expected():
            transport.close()


async def serve(port: int, *, never_confirm: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: EchoConnection(never_confirm=never_confirm), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--never-confirm",
        action="store_true",
        help="send no sessionResumptionUpdate: the relay's replay buffers only grow",
    )
    args = parser.parse_args()
    uvloop.run(serve(args.port, never_confirm=args.never_confirm))


if __name__ == "__main__":
    main()
