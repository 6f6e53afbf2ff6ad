"""The google-genai JavaScript SDK (Node.js) holds a conversation through the relay, as the
README shows. `make test` installs it into tests/js/node_modules from the lockfile."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.relay.conftest import API_KEY
from tests.support.relay import RunningRelay
from tests.support.tls import TLSFiles

JS_DIR = Path(__file__).parents[1] / "js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "@google" / "genai").exists(),
    reason="Node.js or tests/js/node_modules is missing (`make test` installs them)",
)


async def test_a_text_turn_with_the_javascript_sdk(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    process = await asyncio.create_subprocess_exec(
        "node",
        "text_turn.mjs",
        relay.url,
        API_KEY,
        cwd=JS_DIR,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_files.ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert 'you said "Hello from JavaScript"' in stdout.decode()
