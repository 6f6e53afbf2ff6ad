"""The official @google/genai web build, unchanged, in Chromium, through the relay: Vertex mode
(`apiKey: ""` + token in `baseUrl`) and Gemini API mode (`?key=` and the `auth_tokens/` form).
Text, tool calls, usage and transcriptions must come out of the SDK typed as it documents.

The page is served at the relay's own origin (a secure context on 127.0.0.1) by playwright's
request routing, from tests/js/node_modules (`npm ci`, as `make test` does). The SDK's web build
imports `p-retry` (CommonJS, used only for HTTP retries, never by `live`): an import map points
it at a stub, as a bundler would resolve it to a browser build.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from app.auth.keys import hash_api_key
from app.emulator import Emulator, EmulatorConfig
from tests.auth.keys import claims
from tests.browser.conftest import browser_required, console_lines
from tests.relay.conftest import API_KEY, relay_settings
from tests.support.relay import RunningRelay, running_relay

if not browser_required.args[0]:
    from playwright.async_api import Browser, Page, Route

SDK_WEB_BUILD = (
    Path(__file__).parents[1] / "js" / "node_modules" / "@google" / "genai" / "dist" / "web"
)
HARNESS = Path(__file__).with_name("sdk_harness.mjs")
PAGE = """<!doctype html><meta charset="utf-8"><title>sdk</title>
<script type="importmap">
{"imports": {"@google/genai": "/sdk/genai.mjs", "p-retry": "/sdk/p-retry.mjs"}}
</script>
<script type="module">
import * as harness from "/sdk/harness.mjs";
window.harness = harness;
window.harnessReady = true;
</script>"""
P_RETRY_STUB = "export default async function pRetry(run) { return run(1); }\n"

pytestmark = [
    browser_required,
    pytest.mark.skipif(
        not (SDK_WEB_BUILD / "index.mjs").exists(),
        reason="tests/js/node_modules is missing (`make test` runs npm ci)",
    ),
    pytest.mark.asyncio(loop_scope="module"),
]

RUN = """
async ({mode, scenario, relayOrigin, credential}) =>
  window.harness[scenario](window.harness.client(mode, {relayOrigin, credential}))
"""


ISSUER = "https://login.app.test"
AUDIENCE = "live-relay"
ISSUER_SECRET = "issuer-secret-for-browser-tests-" + "x" * 16
PROJECTS = f"""
[projects.app]
api_keys = ["{hash_api_key(API_KEY)}"]
allowed_origins = ["*"]

[[projects.app.issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithm = "HS256"
secret = "{ISSUER_SECRET}"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningRelay]:
    projects = tmp_path_factory.mktemp("projects") / "projects.toml"
    projects.write_text(PROJECTS)
    async with Emulator(EmulatorConfig()) as emulator:
        settings = relay_settings(emulator, None, projects_file=projects)
        async with running_relay(settings) as running:
            yield running


def user_id_token() -> str:
    """What a page holds after its user signs in: a short-lived JWT from the app's issuer."""
    return jwt.encode(claims(ISSUER, AUDIENCE, sub="alice"), ISSUER_SECRET, algorithm="HS256")


async def serve_sdk_files(route: Route) -> None:
    name = route.request.url.rsplit("/", 1)[-1]
    bodies = {
        "index.html": ("text/html", PAGE.encode()),
        "genai.mjs": ("text/javascript", (SDK_WEB_BUILD / "index.mjs").read_bytes()),
        "p-retry.mjs": ("text/javascript", P_RETRY_STUB.encode()),
        "harness.mjs": ("text/javascript", HARNESS.read_bytes()),
    }
    content_type, body = bodies[name]
    await route.fulfill(status=200, content_type=content_type, body=body)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(browser: Browser, relay: RunningRelay) -> AsyncIterator[Page]:
    """The harness page, at the relay's origin as a web app served beside it would be."""
    context = await browser.new_context()
    await context.route("**/sdk/*", serve_sdk_files)
    opened = await context.new_page()
    opened.lines = console_lines(opened)  # type: ignore[attr-defined]
    await opened.goto(f"{relay.http_url}/sdk/index.html")
    await opened.wait_for_function("window.harnessReady === true")
    yield opened
    await context.close()


async def session_token(relay: RunningRelay) -> str:
    """A one-use session token, as the app's backend mints it for the page."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{relay.http_url}/v1/tokens", json={}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    token: str = answer.json()["token"]
    return token


MINT_IN_PAGE = """
async ({tokensUrl, idToken}) => {
  const answer = await fetch(tokensUrl, {method: "POST", body: "{}",
    headers: {"Authorization": `Bearer ${idToken}`, "Content-Type": "application/json"}});
  return (await answer.json()).token;
}
"""


async def minted_by_the_page(page: Page, relay: RunningRelay) -> str:
    """The page trades its user's ID token for a session token itself: a cross-origin call
    (localhost is another origin than the page's 127.0.0.1), so CORS and its preflight apply."""
    tokens_url = relay.http_url.replace("127.0.0.1", "localhost") + "/v1/tokens"
    token: str = await page.evaluate(
        MINT_IN_PAGE, {"tokensUrl": tokens_url, "idToken": user_id_token()}
    )
    return token


async def run(page: Page, relay: RunningRelay, mode: str, scenario: str) -> dict[str, Any]:
    if mode == "vertex":
        credential = API_KEY
    elif mode == "ephemeral":
        credential = await minted_by_the_page(page, relay)
    else:
        credential = await session_token(relay)
    arguments = {
        "mode": mode,
        "scenario": scenario,
        "relayOrigin": relay.http_url,
        "credential": credential,
    }
    try:
        result: dict[str, Any] = await page.evaluate(RUN, arguments)
    except Exception as error:
        lines = "\n".join(page.lines)  # type: ignore[attr-defined]
        raise AssertionError(f"{mode}/{scenario} failed: {error}\n{lines}") from None
    return result


MODES = ["vertex", "gemini", "ephemeral"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_text_turn_with_typed_usage(page: Page, relay: RunningRelay, mode: str) -> None:
    result = await run(page, relay, mode, "textTurn")
    assert 'you said "Hello from Chromium"' in result["text"]
    usage = result["usage"]
    assert usage["responseTokenCount"] > 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]
    assert usage["responseModality"] == "TEXT"


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_call_round_trip(page: Page, relay: RunningRelay, mode: str) -> None:
    result = await run(page, relay, mode, "toolCall")
    call = result["call"]
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Paris"}
    assert call["id"]
    assert 'get_weather returned "{"temperature":21}"' in result["text"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_spoken_turn_with_both_transcriptions(
    page: Page, relay: RunningRelay, mode: str
) -> None:
    result = await run(page, relay, mode, "spokenTurn")
    assert result["input"].endswith("s of speech]")
    assert result["input"].startswith("[")
    assert result["output"].startswith("Reply 1: you said")
    assert result["audioBytes"] > 24_000  # half a second of 24 kHz PCM at least
    assert result["usage"]["responseModality"] == "AUDIO"


@pytest.mark.parametrize("mode", ["vertex", "gemini"])
async def test_the_kit_s_microphone_and_player_work_with_the_sdk(
    page: Page, relay: RunningRelay, mode: str
) -> None:
    result = await run(page, relay, mode, "kitWithSdk")
    assert result["input"].endswith("s of speech]")
    assert result["output"].startswith("Reply 1: you said")
    assert result["playedSeconds"] > 0.5
