"""The code a reader pastes from the README and docs/clients.md works: each quick-start block
is run as written against a real `live-relay dev` (what `make run` starts), with the dev key
pasted where it says `lr_dev_…` and the port the relay got where it says 8080, as a reader
does. JavaScript blocks run under Node.js with the locked @google/genai (`make test` installs
it); the browser block runs on Node.js's WebSocket, the same WHATWG API a page has."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.markdown import DOCS, README, block_containing
from tests.support.net import wait_for_port

API_KEY = "lr_dev_snippet_test_key"
JS_DIR = Path(__file__).parents[1] / "js"
CLIENTS = DOCS / "clients.md"
PAGES = [README, CLIENTS]
REPLY = 'Reply 1: you said "Hello".'
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
needs_js_sdk = pytest.mark.skipif(
    not (JS_DIR / "node_modules" / "@google" / "genai").exists(),
    reason="tests/js/node_modules is missing (`make test` installs it when npm is there)",
)


@dataclass(frozen=True)
class DevRelay:
    port: int
    workdir: Path  # where `live-relay dev` ran: .live-relay/dev-tls/ca.pem is here


def start_dev_relay(workdir: Path, *extra: str) -> Iterator[DevRelay]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "dev", "--port", "0", "--api-key", API_KEY, *extra],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with process:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            if found := re.search(r"relay on wss?://localhost:(\d+)/", process.stdout.readline()):
                port = int(found[1])
        assert port is not None, "live-relay dev printed no URL"
        wait_for_port(port)
        yield DevRelay(port, workdir)
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def dev_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRelay]:
    yield from start_dev_relay(tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="module")
def plain_dev_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRelay]:
    yield from start_dev_relay(tmp_path_factory.mktemp("plain"), "--plain")


def pasted(code: str, relay: DevRelay) -> str:
    """The block as a reader fills it in: their key, their port."""
    assert "localhost:8080" in code
    return code.replace("lr_dev_…", API_KEY).replace("localhost:8080", f"localhost:{relay.port}")


def run_until(command: list[str], cwd: Path, expected: str, env: dict[str, str]) -> str:
    """Run a snippet that may never exit by itself (a live session stays open) until its
    output holds `expected`, then stop it. Returns all output."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = ""
    with process:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while expected not in output.replace("\n", "") and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            output += line
        process.kill()
    return output


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_sdk_quick_start_runs(page: Path, dev_relay: DevRelay) -> None:
    block = block_containing(page, "python", "genai.Client(")
    (dev_relay.workdir / "quick_start.py").write_text(pasted(block.text, dev_relay))
    result = subprocess.run(
        [sys.executable, "quick_start.py"],
        cwd=dev_relay.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert REPLY in result.stdout


@needs_node
@needs_js_sdk
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_javascript_sdk_quick_start_runs(page: Path, dev_relay: DevRelay) -> None:
    block = block_containing(page, "js", "new GoogleGenAI(")
    script = dev_relay.workdir / f"quick_start_{page.stem}.mjs"
    script.write_text(pasted(block.text, dev_relay))
    modules = dev_relay.workdir / "node_modules"
    if not modules.exists():
        modules.symlink_to(JS_DIR / "node_modules")  # as if `npm install @google/genai` ran here
    ca_file = dev_relay.workdir / ".live-relay" / "dev-tls" / "ca.pem"
    env = {
        "PATH": str(Path(shutil.which("node") or "node").parent),
        "NODE_EXTRA_CA_CERTS": str(ca_file),
    }
    output = run_until(["node", script.name], dev_relay.workdir, REPLY, env)
    assert REPLY in output.replace("\n", ""), output


@needs_node
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_browser_quick_start_runs(page: Path, plain_dev_relay: DevRelay) -> None:
    block = block_containing(page, "js", "new WebSocket(`ws://localhost:8080")
    script = plain_dev_relay.workdir / f"browser_{page.stem}.mjs"
    # A page gets its token from its backend; here the dev key stands in for it.
    script.write_text(f'const token = "{API_KEY}";\n' + pasted(block.text, plain_dev_relay))
    env = {"PATH": str(Path(shutil.which("node") or "node").parent)}
    command = ["node", "--experimental-websocket", "--no-warnings", script.name]
    output = run_until(command, plain_dev_relay.workdir, REPLY, env)
    assert REPLY in output.replace("\n", ""), output
