"""`live-relay dev`, what `make run` runs: its printed snippet, pasted as is, talks Live API."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import wait_for_port


@pytest.fixture
def dev_relay(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "dev", "--port", "0", "--api-key", "lr_dev_fixed_for_test"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with process:  # closes its stdout pipe
        yield process
        process.terminate()
        process.wait(timeout=30)


def read_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("asyncio.run(main())"):
            return "".join(lines)
    raise AssertionError("no snippet printed:\n" + "".join(lines))


def test_the_printed_snippet_talks_to_the_relay(
    dev_relay: subprocess.Popen[str], tmp_path: Path
) -> None:
    banner = read_banner(dev_relay)
    assert re.search(r"relay on wss://localhost:\d+/v1/live", banner)
    assert "API key: lr_dev_fixed_for_test" in banner
    snippet = banner[banner.index("import asyncio") :]
    (tmp_path / "snippet.py").write_text(snippet)
    port = int(re.search(r"localhost:(\d+)", banner).group(1))  # type: ignore[union-attr]
    wait_for_port(port)  # the banner comes as the port is bound, a moment before it listens
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert 'Reply 1: you said "Hello".' in result.stdout
    # The demo page, at the address the banner gives (the key rides in the fragment).
    demo = re.search(r"Browser demo: (https://localhost:\d+/)#key=lr_dev_fixed_for_test", banner)
    assert demo is not None, banner
    ca_file = re.search(r'cafile="([^"]+)"', banner).group(1)  # type: ignore[union-attr]
    page = httpx.get(demo.group(1), verify=ssl.create_default_context(cafile=ca_file))
    assert page.status_code == 200
    assert 'import { LiveRelay } from "/client/live-relay.js"' in page.text
