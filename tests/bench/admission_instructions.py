"""Instructions the relay spends per admission, counted by callgrind: exact where CPU time is not.

    python -m tests.bench.admission_instructions                    # 200 admissions, 10 at once
    python -m tests.bench.admission_instructions --admissions 400 --at-once 20

The storm bench's CPU per admission moves by ±15 % from run to run on this virtual machine,
more than most single changes to an admission are worth. This runs `live-relay serve` under
`valgrind --tool=callgrind` in front of the bench's echo upstream and a real Redis, opens and
closes some sessions to warm it, zeroes the counters, then makes `--admissions` sessions
(connect with an API key, setup, `setupComplete`, close 1000, `--at-once` at a time) and
prints the instructions the relay ran per admission: the figure to compare between two
commits (the same commit gives the same figure within about 1 %: what depends on timing, a
collection or a Redis pipeline's size, moves it a little). Measured on 8 Dec: 4.95-5.01
million instructions per admission (about 0.93 ms of CPU in the storm bench that day).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tests.bench.processes import python, running
from tests.relay.conftest import API_KEY, MODEL
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

SETUP = json.dumps({"setup": {"model": MODEL}})


async def admit(url: str) -> None:
    async with connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
        await ws.send(SETUP)
        answer = await ws.recv()
        assert b"setupComplete" in (answer if isinstance(answer, bytes) else answer.encode())


async def storm(url: str, admissions: int, at_once: int) -> None:
    for start in range(0, admissions, at_once):
        await asyncio.gather(*(admit(url) for _ in range(min(at_once, admissions - start))))


def callgrind_total(out_file: Path) -> int:
    """The `summary:` or `totals:` instruction count of a callgrind dump."""
    for line in out_file.read_text().splitlines():
        match = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"no total in {out_file}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admissions", type=int, default=200)
    parser.add_argument("--at-once", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="admission-instructions-") as tmp:
        workdir = Path(tmp)
        (workdir / "redis").mkdir()
        redis = RedisServer(workdir / "redis")
        redis.start()
        upstream_port, relay_port = free_port(), free_port()
        out = workdir / "callgrind.out"
        relay_command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *python("-m", "app", "serve"),
        ]
        env = {
            "RELAY_PORT": str(relay_port),
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": f"http://127.0.0.1:{upstream_port}",
            "RELAY_API_KEYS": API_KEY,
            "RELAY_REDIS_URL": redis.url,
            "RELAY_DEFAULT_MAX_SESSIONS": "100000",
            "RELAY_DRAIN_SECONDS": "1",
            "PYTHONHASHSEED": "0",
        }
        upstream = python("-m", "tests.bench.echo_upstream", "--port", str(upstream_port))
        try:
            with (
                running(upstream, log=workdir / "upstream.log", port=upstream_port),
                # Under callgrind the relay starts some fifty times slower.
                running(
                    relay_command,
                    log=workdir / "relay.log",
                    port=relay_port,
                    env=env,
                    startup_seconds=600,
                ) as relay,
            ):
                url = f"ws://127.0.0.1:{relay_port}/v1/live"
                asyncio.run(storm(url, args.warm_up, args.at_once))
                time.sleep(5)  # the warm-up's sessions end under valgrind's pace
                subprocess.run(["callgrind_control", "--zero", str(relay.pid)], check=True)
                started = time.perf_counter()
                asyncio.run(storm(url, args.admissions, args.at_once))
                time.sleep(5)
                subprocess.run(["callgrind_control", "--dump", str(relay.pid)], check=True)
                elapsed = time.perf_counter() - started
        finally:
            redis.stop()
        dumps = sorted(workdir.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        # The dump after the storm: the one before the final dump at exit.
        total = callgrind_total(dumps[-2] if len(dumps) > 1 else dumps[-1])
        print("| admissions | at once | instructions / admission | wall s under callgrind |")
        print("|---:|---:|---:|---:|")
        per_admission = total / args.admissions
        print(f"| {args.admissions} | {args.at_once} | {per_admission:,.0f} | {elapsed:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
