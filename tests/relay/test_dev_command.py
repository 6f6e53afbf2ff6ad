"""`live-relay dev`, what `make run` runs: its printed snippet, pasted as is, talks Live API."""

from __future__ import annotations

import re
import shutil
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


def read_until(process: subprocess.Popen[str], last_line: str) -> str:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.rstrip() == last_line:
            return "".join(lines)
    raise AssertionError("the banner never ended:\n" + "".join(lines))


def test_the_banner_names_the_dev_ca_by_its_full_path(
    dev_relay: subprocess.Popen[str], tmp_path: Path
) -> None:
    banner = read_banner(dev_relay)
    ca_line = re.search(r"^Dev CA: (.+)$", banner, re.MULTILINE)
    assert ca_line is not None, banner
    assert ca_line[1] == str(tmp_path / ".live-relay" / "dev-tls" / "ca.pem")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_with_plain_the_printed_snippet_is_one_that_works_over_ws(tmp_path: Path) -> None:
    """The google-genai SDKs cannot speak ws://: `--plain` prints a plain WebSocket snippet
    (what a page has), which prints the reply and ends its session by itself."""
    command = [sys.executable, "-m", "app", "dev", "--plain", "--port", "0"]
    with subprocess.Popen(
        [*command, "--api-key", "lr_dev_fixed_for_test"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            banner = read_until(process, "};")
            assert "genai.Client" not in banner
            assert "need wss://" in banner
            snippet = banner[banner.index("const ws = ") :]
            (tmp_path / "hello.mjs").write_text(snippet)
            wait_for_port(int(re.search(r"localhost:(\d+)", banner)[1]))  # type: ignore[index]
            result = subprocess.run(
                ["node", "--experimental-websocket", "--no-warnings", "hello.mjs"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,  # it must exit by itself
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'Reply 1: you said "Hello".'
