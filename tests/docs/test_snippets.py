"""The code a reader pastes from the README and docs/clients.md works: each quick-start block
is run as written against a real `live-relay dev` (what `make run` starts), with the dev key
pasted where it says `lr_dev_…`, the CA path the relay printed where it says
`/path/to/live-relay/...`, and the port the relay got where it says 8080, as a reader does, from
a directory of the reader's own (not the relay's). Each must print the reply and exit by
itself. JavaScript blocks run under Node.js with the locked @google/genai (`make test` installs
it) as ES modules; the browser block runs on Node.js's WebSocket, the same WHATWG API a page
has (tests/browser runs it in Chromium too)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.markdown import DOCS, README, block_containing, code_blocks
from tests.support.net import wait_for_port

API_KEY = "lr_dev_snippet_test_key"
JS_DIR = Path(__file__).parents[1] / "js"
CLIENTS = DOCS / "clients.md"
PAGES = [README, CLIENTS]
REPLY = 'Reply 1: you said "Hello".'
CA_PLACEHOLDER = "/path/to/.live-relay/dev-tls/ca.pem"
QUICK_START = 'parts": [{"text": "Hello"}]'
SNIPPET_SECONDS = 60  # a snippet that has not exited by then never would
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
needs_js_sdk = pytest.mark.skipif(
    not (JS_DIR / "node_modules" / "@google" / "genai").exists(),
    reason="tests/js/node_modules is missing (`make test` installs it when npm is there)",
)


@dataclass(frozen=True)
class DevRelay:
    port: int
    workdir: Path  # where `live-relay dev` ran: .live-relay/dev-tls/ca.pem is here

    @property
    def ca_file(self) -> Path:
        return self.workdir / ".live-relay" / "dev-tls" / "ca.pem"


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
    """The block as a reader fills it in: their key, their CA file, their port."""
    assert "localhost:8080" in code
    return (
        code.replace("lr_dev_…", API_KEY)
        .replace(CA_PLACEHOLDER, str(relay.ca_file))
        .replace("localhost:8080", f"localhost:{relay.port}")
    )


def run_to_the_end(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a snippet, which must exit by itself with status 0; return what it printed."""
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SNIPPET_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"the snippet did not exit within {SNIPPET_SECONDS} s: {exc}"
        ) from None
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def reader_dir(tmp_path: Path) -> Path:
    """Where a reader keeps their own code: not the relay's directory."""
    return tmp_path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_sdk_quick_start_runs(page: Path, dev_relay: DevRelay, reader_dir: Path) -> None:
    [block] = [b for b in code_blocks(page, "python") if QUICK_START in b.text]
    assert CA_PLACEHOLDER in block.text
    (reader_dir / "quick_start.py").write_text(pasted(block.text, dev_relay))
    output = run_to_the_end([sys.executable, "quick_start.py"], reader_dir, env=dict(os.environ))
    assert output.strip() == REPLY


@needs_node
@needs_js_sdk
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_javascript_sdk_quick_start_runs(
    page: Path, dev_relay: DevRelay, reader_dir: Path
) -> None:
    block = block_containing(page, "js", "new GoogleGenAI(")
    assert "quick_start.mjs" in block.text  # the name that makes it an ES module
    (reader_dir / "quick_start.mjs").write_text(pasted(block.text, dev_relay))
    # as if `npm install @google/genai` ran here
    (reader_dir / "node_modules").symlink_to(JS_DIR / "node_modules")
    env = {
        "PATH": str(Path(shutil.which("node") or "node").parent),
        "NODE_EXTRA_CA_CERTS": str(dev_relay.ca_file),
    }
    output = run_to_the_end(["node", "quick_start.mjs"], reader_dir, env)
    assert output.strip() == REPLY


@needs_node
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_browser_quick_start_runs(
    page: Path, plain_dev_relay: DevRelay, reader_dir: Path
) -> None:
    block = block_containing(page, "js", "new WebSocket(`ws://localhost:8080")
    (reader_dir / "browser.mjs").write_text(pasted(block.text, plain_dev_relay))
    env = {"PATH": str(Path(shutil.which("node") or "node").parent)}
    command = ["node", "--experimental-websocket", "--no-warnings", "browser.mjs"]
    output = run_to_the_end(command, reader_dir, env)
    assert output.strip() == REPLY


def test_a_refused_sdk_connection_shows_the_relays_reason(
    dev_relay: DevRelay, reader_dir: Path
) -> None:
    """A wrong key, as a reader would make the mistake: the documented handler prints the
    status and the relay's reason, where the SDK alone shows a traceback ending in HTTP 401."""
    block = block_containing(CLIENTS, "python", "InvalidStatus")
    code = pasted(block.text, dev_relay).replace(API_KEY, "lr_dev_not_the_right_key")
    (reader_dir / "refused.py").write_text(code)
    output = run_to_the_end([sys.executable, "refused.py"], reader_dir, env=dict(os.environ))
    assert output.strip() == "401 UNAUTHENTICATED the API key is not recognised"
