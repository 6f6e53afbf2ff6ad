"""The google-genai JavaScript SDK (Node.js) holds a conversation through the relay, as the
README shows. `make test` installs it into tests/js/node_modules from the lockfile."""

from __future__ import annotations

from tests.relay.conftest import API_KEY
from tests.support.node import needs_js_sdk, run_script
from tests.support.relay import RunningRelay
from tests.support.tls import TLSFiles

pytestmark = needs_js_sdk


async def test_a_text_turn_with_the_javascript_sdk(
    relay: RunningRelay, tls_files: TLSFiles
) -> None:
    stdout = await run_script("text_turn.mjs", relay.url, API_KEY, ca_file=tls_files.ca_file)
    assert 'you said "Hello from JavaScript"' in stdout
