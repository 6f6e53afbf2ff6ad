"""The JavaScript SDK's tests: where their scripts live, and running one as a user would.

`make test` installs @google/genai into tests/js/node_modules from the lockfile; without Node.js
or those modules the tests that need them are skipped and say why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parents[1] / "js"

needs_js_sdk = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "@google" / "genai").exists(),
    reason="Node.js or tests/js/node_modules is missing (`make test` installs them)",
)


async def run_script(script: str, *args: str, ca_file: Path) -> str:
    """Run `tests/js/<script>` with `args`, trusting `ca_file`; its stdout (it must exit 0
    within a minute)."""
    process = await asyncio.create_subprocess_exec(
        "node",
        script,
        *args,
        cwd=JS_DIR,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()
