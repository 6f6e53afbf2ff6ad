"""The README's browser block, pasted into Chromium's console on the page `make run ARGS=--plain`
serves (the README says to): it prints the reply and closes its socket by itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.conftest import browser_required, console_lines
from tests.docs.markdown import README, block_containing
from tests.docs.test_snippets import REPLY, DevRelay, pasted, start_dev_relay

if not browser_required.args[0]:
    from playwright.async_api import Browser

pytestmark = [browser_required, pytest.mark.asyncio(loop_scope="module")]

CLOSED = 3  # WebSocket.CLOSED


@pytest.fixture(scope="module")
def plain_dev_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRelay]:
    yield from start_dev_relay(tmp_path_factory.mktemp("plain"), "--plain")


async def test_the_readme_browser_block_prints_the_reply_and_closes(
    browser: Browser, plain_dev_relay: DevRelay
) -> None:
    block = block_containing(README, "js", "new WebSocket(`ws://localhost:8080")
    page = await browser.new_page()
    lines = console_lines(page)
    try:
        await page.goto(f"http://localhost:{plain_dev_relay.port}/")
        await page.add_script_tag(content=pasted(block.text, plain_dev_relay))
        await page.wait_for_function(f"ws.readyState === {CLOSED}", timeout=30_000)
    finally:
        await page.close()
    assert f"log: {REPLY}" in lines, lines
