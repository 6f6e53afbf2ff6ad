"""What permessage-deflate saves on Live API audio frames, and what it costs per frame.

Compresses the load generator's audio messages (client → server) and the echoes the emulator
sends back (server → client) as `websockets` does with its default settings (memLevel 5, a
32 KiB window, context takeover), and times it. Audio is base64 inside JSON, so deflate can
only win back part of base64's 4/3 inflation: the saving is small and the CPU cost is not.

    python -m tests.bench.deflate
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass

from app.loadtest.probe import AudioProbe

ECHO_HEAD = (
    b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
    b'{"mimeType":"audio/pcm;rate=24000","data":"'
)
ECHO_TAIL = b'"}}]}}}'
FRAMES = 2000
SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"  # removed from every message (RFC 7692)


@dataclass(frozen=True)
class Saving:
    direction: str
    bytes_per_frame: float
    deflated_bytes_per_frame: float
    compress_us_per_frame: float
    decompress_us_per_frame: float

    @property
    def saved_percent(self) -> float:
        return 100 * (1 - self.deflated_bytes_per_frame / self.bytes_per_frame)


def measure(direction: str, messages: list[bytes]) -> Saving:
    compressor = zlib.compressobj(wbits=-15, memLevel=5)
    started = time.process_time()
    deflated = [
        compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH) for message in messages
    ]
    compress_seconds = time.process_time() - started
    decompressor = zlib.decompressobj(wbits=-15)
    started = time.process_time()
    for data in deflated:
        decompressor.decompress(data)
    decompress_seconds = time.process_time() - started
    wire = [len(data) - len(SYNC_FLUSH_TAIL) for data in deflated]
    return Saving(
        direction,
        bytes_per_frame=sum(map(len, messages)) / len(messages),
        deflated_bytes_per_frame=sum(wire) / len(wire),
        compress_us_per_frame=1e6 * compress_seconds / len(messages),
        decompress_us_per_frame=1e6 * decompress_seconds / len(messages),
    )


def main() -> None:
    probe = AudioProbe(40)
    sent = [probe.frame(0, n, time.monotonic_ns()) for n in range(FRAMES)]
    echoes = [
        ECHO_HEAD + json.loads(frame)["realtimeInput"]["audio"]["data"].encode() + ECHO_TAIL
        for frame in sent
    ]
    print("| direction | bytes / frame | deflated | saved | compress µs | decompress µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for saving in (measure("client → server", sent), measure("server → client", echoes)):
        print(
            f"| {saving.direction} | {saving.bytes_per_frame:.0f} "
            f"| {saving.deflated_bytes_per_frame:.0f} | {saving.saved_percent:.1f} % "
            f"| {saving.compress_us_per_frame:.1f} | {saving.decompress_us_per_frame:.1f} |"
        )


if __name__ == "__main__":
    main()
