"""The Live Avatar in Chromium: the emulator's gemini-3.8-live answers in video (fragmented MP4
at 24 fps), the relay carries it, and the client kit and the demo page play it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.emulator import Emulator, EmulatorConfig
from app.protocol.models import LIVE_3_8
from tests.browser.conftest import Microphone, browser_required
from tests.browser.test_client_kit import TURN_TIMEOUT_MS, new_page
from tests.relay.conftest import API_KEY, relay_settings
from tests.support.relay import RunningRelay, running_relay

if not browser_required.args[0]:
    from playwright.async_api import Browser

pytestmark = [browser_required, pytest.mark.asyncio(loop_scope="module")]

SPEAK_TO_AVATAR = """
async ({url, token, model}) => {
  const { LiveRelay } = await import("/client/live-relay.js");
  const video = document.createElement("video");
  video.muted = true;
  document.body.appendChild(video);
  const live = new LiveRelay({url, token, video, setup: {
    model, generationConfig: {responseModalities: ["VIDEO"]}, outputAudioTranscription: {}}});
  window.live = live;
  window.turns = 0;
  live.addEventListener("turn-complete", () => { window.turns += 1; });
  await live.connect();
  live.sendText("show yourself, and tell me a story about a very patient relay");
}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay() -> AsyncIterator[RunningRelay]:
    async with Emulator(EmulatorConfig()) as emulator:
        settings = relay_settings(emulator, None, allowed_origins=("*",), demo_page=True)
        async with running_relay(settings) as running:
            yield running


async def test_the_client_kit_plays_the_avatar_s_video_as_it_arrives(
    browser: Browser, relay: RunningRelay
) -> None:
    page, lines = await new_page(browser, f"{relay.http_url}/")
    await page.evaluate(SPEAK_TO_AVATAR, {"url": relay.url, "token": API_KEY, "model": LIVE_3_8})
    await page.wait_for_function("window.turns >= 1", timeout=TURN_TIMEOUT_MS)
    await page.wait_for_function(
        "window.live.videoPlayer.video.currentTime > 1", timeout=TURN_TIMEOUT_MS
    )
    played = await page.evaluate(
        """() => {
          const video = window.live.videoPlayer.video;
          const quality = video.getVideoPlaybackQuality();
          return {width: video.videoWidth, height: video.videoHeight, error: video.error?.message,
                  decoded: quality.totalVideoFrames, chunks: window.live.videoPlayer.chunks,
                  buffered: window.live.videoPlayer.queuedSeconds + video.currentTime};
        }"""
    )
    await page.evaluate("window.live.close()")
    await page.context.close()
    assert played["error"] is None, lines
    assert (played["width"], played["height"]) == (64, 64)
    assert played["chunks"] >= 2
    # 24 frames a second of what was buffered: the frames decoded so far are about that many.
    assert played["decoded"] >= 20, played


async def test_the_demo_page_shows_the_avatar_when_asked(
    browser: Browser, relay: RunningRelay, microphone: Microphone
) -> None:
    page, lines = await new_page(browser, f"{relay.http_url}/#key={API_KEY}")
    await page.check("#avatar")
    assert await page.input_value("#model") == LIVE_3_8
    await page.click("#start")
    await page.wait_for_function(
        """() => window.demoSession?.videoPlayer?.chunks > 0
             && document.querySelector("#avatar-video").videoWidth === 64
             && !document.querySelector("#avatar-video").hidden""",
        timeout=TURN_TIMEOUT_MS,
    )
    said = await page.text_content("#model-said")
    await page.click("#stop")
    await page.context.close()
    assert said is not None
    assert "Reply 1" in said, lines
