"""What a page can see and do without a browser in the loop: refusals it can read, CORS on the
token endpoint, and the kit's files. Chromium itself drives them in tests/browser."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.auth.keys import hash_api_key
from app.emulator import Emulator
from tests.relay.conftest import relay_settings
from tests.relay.test_setup_and_closes import close_of
from tests.support.relay import RunningRelay, running_relay

SHOP_KEY = "lr_shop_" + "s" * 40
BLOG_KEY = "lr_blog_" + "b" * 40
SHOP = "https://shop.example.test"
BLOG = "https://blog.example.test"
PROJECTS = f"""
[projects.shop]
api_keys = ["{hash_api_key(SHOP_KEY)}"]
allowed_origins = ["{SHOP}"]

[projects.blog]
api_keys = ["{hash_api_key(BLOG_KEY)}"]
allowed_origins = ["{BLOG}"]
"""


@pytest.fixture
async def relay(emulator: Emulator, tmp_path: Path) -> AsyncIterator[RunningRelay]:
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    settings = relay_settings(emulator, None, api_keys=(), projects_file=projects, demo_page=True)
    async with running_relay(settings) as running:
        yield running


def base(relay: RunningRelay) -> str:
    return relay.url.removesuffix("/v1/live")


async def test_a_wrong_path_answers_servers_404_naming_the_live_endpoint(
    relay: RunningRelay,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{base(relay)}/v1/liv", additional_headers={"x-goog-api-key": SHOP_KEY})
    assert refused.value.response.status_code == 404
    body = json.loads(refused.value.response.body or b"{}")
    assert "/v1/live" in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "query", "code", "words"),
    [
        ("/live", f"key={SHOP_KEY}", 4404, "/v1/live"),
        ("/v1/live", "key=lr_nobody_" + "x" * 40, 4401, "not recognised"),
        ("/v1/live", "", 4401, "no credential"),
        ("/v1/live", f"key={BLOG_KEY}", 4403, "allowed_origins"),
    ],
)
async def test_a_browser_reads_every_refusal_in_its_close_event(
    relay: RunningRelay, emulator: Emulator, path: str, query: str, code: int, words: str
) -> None:
    url = f"{base(relay)}{path}?{query}"
    async with connect(url, origin=SHOP, subprotocols=["live-relay"]) as ws:  # type: ignore[arg-type, list-item]
        assert ws.subprotocol == "live-relay"  # echoed, or the browser would fail the handshake
        got_code, reason = await close_of(ws)
    assert got_code == code
    assert words in reason
    assert emulator.stats.connections_accepted == 0
    assert relay.state.quota.live_leases == []


async def test_a_preflight_from_a_listed_origin_is_granted(relay: RunningRelay) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.options(
            f"{relay.http_url}/v1/tokens",
            headers={
                "Origin": BLOG,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == BLOG
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "authorization" in answer.headers["access-control-allow-headers"]


async def test_a_preflight_from_an_unlisted_origin_gets_no_cors_headers(
    relay: RunningRelay,
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.options(
            f"{relay.http_url}/v1/tokens",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in answer.headers


async def test_a_page_mints_a_token_for_its_own_project_and_reads_refusals(
    relay: RunningRelay,
) -> None:
    async with httpx.AsyncClient() as http:
        minted = await http.post(
            f"{relay.http_url}/v1/tokens",
            json={},
            headers={"Origin": SHOP, "Authorization": f"Bearer {SHOP_KEY}"},
        )
        foreign = await http.post(
            f"{relay.http_url}/v1/tokens",
            json={},
            headers={"Origin": SHOP, "Authorization": f"Bearer {BLOG_KEY}"},
        )
    assert minted.status_code == 200
    assert minted.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in minted.headers["vary"]
    assert minted.json()["token"]
    # The blog project does not list the shop's origin: refused, and the page can read why.
    assert foreign.status_code == 403
    assert foreign.headers["access-control-allow-origin"] == SHOP
    assert "allowed_origins" in foreign.json()["error"]["message"]


async def test_the_kit_and_the_demo_page_are_served(relay: RunningRelay) -> None:
    async with httpx.AsyncClient() as http:
        kit = await http.get(f"{relay.http_url}/client/live-relay.js")
        worklet = await http.get(f"{relay.http_url}/client/live-relay-capture.js")
        page = await http.get(f"{relay.http_url}/")
    assert kit.status_code == 200
    assert kit.headers["content-type"].startswith("text/javascript")
    assert "export class LiveRelay" in kit.text
    assert 'registerProcessor("live-relay-capture"' in worklet.text
    assert page.status_code == 200
    assert '<script type="module">' in page.text


async def test_no_demo_page_unless_asked(plain_relay: RunningRelay) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{plain_relay.http_url}/")
    assert page.status_code == 404


async def test_a_draining_relay_tells_a_browser_to_reconnect(relay: RunningRelay) -> None:
    relay.state.sessions.draining = True  # what SIGTERM sets before the drain
    async with connect(f"{relay.url}?key={SHOP_KEY}", origin=SHOP) as ws:  # type: ignore[arg-type]
        code, reason = await close_of(ws)
    assert (code, reason) == (4503, "the relay is shutting down: reconnect")
