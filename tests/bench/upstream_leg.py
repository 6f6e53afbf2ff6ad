"""What the upstream leg costs per frame: the relay's `LeanConnection` against picows.

    python -m tests.bench.upstream_leg                  # 20,000 round trips, 3 rounds
    python -m tests.bench.upstream_leg --round-trips 2000 --rounds 1 --legs lean

Issue 27 names picows (a Cython WebSocket client) as a leaner upstream leg. This measures one
leg the way a session uses it: a 40 ms audio frame sent on the fast lane (`send_now`) and its
echo taken by the fast lane's sink, one at a time, over a real socket to the bench's echo
upstream (`tests.bench.echo_upstream`, on the other core). The table gives this process's
CPU time per round trip (one send and one receive; what the two legs share, the socket calls
and the future each round trip waits on, included). picows is not a dependency: without it
installed (`pip install picows`), only the relay's leg is measured.

CPU time here moves by ±10 % from round to round. For exact figures count instructions:
run each leg under `valgrind --tool=callgrind` at two `--round-trips` and divide the
difference of the totals by the difference of the counts (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from app.relay.upstream.lean_upstream import LeanConnection
from tests.bench.processes import pinned, python, running
from tests.support.net import free_port

SETUP = json.dumps(
    {
        "setup": {
            "model": "projects/p/locations/l/publishers/google/models/m",
            "systemInstruction": {"parts": [{"text": "__LOAD_TEST_ECHO_AUDIO__"}]},
        }
    }
)
UPDATE = b"sessionResumptionUpdate"


def audio_frame(number: int) -> str:
    """40 ms of 16 kHz PCM, in the compact JSON the echo upstream recognises."""
    pcm = number.to_bytes(4, "big") + bytes(1276)
    data = base64.b64encode(pcm).decode()
    audio = {"data": data, "mimeType": "audio/pcm;rate=16000"}
    return json.dumps({"realtimeInput": {"audio": audio}}, separators=(",", ":"))


FRAMES = [audio_frame(number) for number in range(1000)]
Leg = Callable[[str, int], Coroutine[Any, Any, float]]


async def lean(url: str, round_trips: int) -> float:
    """CPU seconds for `round_trips` frames through a `LeanConnection`, as a session drives it."""
    conn = await LeanConnection.open(
        url,
        headers={},
        ssl_context=None,
        compression=False,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=2,
        max_size=None,
        user_agent="bench",
    )
    await conn.send(SETUP)
    await conn.recv()  # setupComplete
    loop = asyncio.get_running_loop()
    answer: list[asyncio.Future[str | bytes]] = []

    def sink(message: str | bytes) -> bool:
        answer[0].set_result(message)
        return True

    conn.set_sink(sink)
    reader = asyncio.ensure_future(conn.recv())  # the sink is offered messages while one waits
    await asyncio.sleep(0)
    started = time.process_time()
    for number in range(round_trips):
        answer[:] = [loop.create_future()]
        conn.send_now(FRAMES[number % len(FRAMES)])
        while UPDATE in _bytes(await answer[0]):  # an update it confirms with: not the echo
            answer[:] = [loop.create_future()]
    spent = time.process_time() - started
    reader.cancel()
    await conn.close()
    return spent


async def picows_leg(url: str, round_trips: int) -> float:
    """The same through picows' client, its frames built and parsed in Cython."""
    # Imported by name: it is not a dependency, and mypy must pass with or without it.
    picows: Any = importlib.import_module("picows")
    text, binary = picows.WSMsgType.TEXT, picows.WSMsgType.BINARY
    loop = asyncio.get_running_loop()
    answer: list[asyncio.Future[bytes]] = [loop.create_future()]

    class Listener(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type in (text, binary):
                answer[0].set_result(frame.get_payload_as_bytes())

    transport, _ = await picows.ws_connect(Listener, url)
    transport.send(text, SETUP.encode())
    await answer[0]  # setupComplete
    started = time.process_time()
    for number in range(round_trips):
        answer[:] = [loop.create_future()]
        transport.send(text, FRAMES[number % len(FRAMES)].encode())
        while UPDATE in await answer[0]:
            answer[:] = [loop.create_future()]
    spent = time.process_time() - started
    transport.disconnect()
    return spent


def _bytes(message: str | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.encode()


LEGS: dict[str, Leg] = {"lean": lean, "picows": picows_leg}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.upstream_leg")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="each leg this many times, in turn")
    parser.add_argument("--legs", default="lean,picows", help="comma-separated: lean, picows")
    parser.add_argument(
        "--core",
        type=int,
        choices=(0, 1),
        default=0,
        help="this process's core (the upstream's: the other)",
    )
    args = parser.parse_args(argv)
    legs = [name for name in args.legs.split(",") if name]
    if "picows" in legs and importlib.util.find_spec("picows") is None:
        print("picows is not installed (pip install picows): measuring the lean leg only")
        legs.remove("picows")
    if not 1 <= args.round_trips <= 1_000_000 or not 1 <= args.rounds <= 20:
        parser.error("--round-trips within 1..1000000, --rounds within 1..20")
    os.sched_setaffinity(0, {args.core})
    port = free_port()
    upstream = pinned(1 - args.core, python("-m", "tests.bench.echo_upstream", "--port", str(port)))
    spent: dict[str, list[float]] = {name: [] for name in legs}
    log = Path("bench-results") / "upstream-leg-echo.log"
    log.parent.mkdir(exist_ok=True)
    with running(upstream, log=log, port=port):
        url = f"ws://127.0.0.1:{port}/ws"
        for _ in range(args.rounds):
            for name in legs:
                seconds = uvloop.run(LEGS[name](url, args.round_trips))
                spent[name].append(seconds / args.round_trips * 1e6)
    print(_table(spent, args.round_trips))
    return 0


def _table(spent: dict[str, list[float]], round_trips: int) -> str:
    rows = [
        "| leg | CPU µs per round trip, each round | median |",
        "|---|---|---:|",
    ]
    for name, figures in spent.items():
        each = ", ".join(f"{figure:.1f}" for figure in figures)
        rows.append(f"| {name} | {each} | {statistics.median(figures):.1f} |")
    return f"{round_trips} round trips a round (one send, one receive)\n\n" + "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
