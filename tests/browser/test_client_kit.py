"""The client kit and the demo page in Chromium: a spoken turn answered with audio that plays,
both transcripts, barge-in, a refusal the page shows, and end-of-speech -> first-audio latency
through the relay and straight to the emulator, measured in the same run."""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.emulator import Emulator, EmulatorConfig
from app.relay.upstream.upstream import live_url
from tests.browser.conftest import Microphone, browser_required, console_lines
from tests.relay.conftest import API_KEY, MODEL, relay_settings
from tests.support.relay import RunningRelay, running_relay

if not browser_required.args[0]:
    from playwright.async_api import Browser, Page

pytestmark = [browser_required, pytest.mark.asyncio(loop_scope="module")]

TURN_TIMEOUT_MS = 45_000
EMULATOR_MODEL_PATH = (
    f"projects/live-relay-dev/locations/us-central1/publishers/google/models/{MODEL}"
)
# Set to a directory (docs/images) to refresh the screenshots the docs show.
SCREENSHOTS = os.environ.get("LIVE_RELAY_SCREENSHOTS")

START_KIT = """
async ({url, token, model}) => {
  const { LiveRelay } = await import("/client/live-relay.js");
  const live = new LiveRelay({url, token, setup: {
    model, generationConfig: {responseModalities: ["AUDIO"]},
    inputAudioTranscription: {}, outputAudioTranscription: {}}});
  window.live = live;
  window.events = [];
  for (const name of ["input-transcript", "output-transcript", "playing", "interrupted",
                      "turn-complete", "close"]) {
    live.addEventListener(name, (e) => window.events.push({name, detail: e.detail}));
  }
  await live.connect();
  // The fake microphone is a clean recording: no processing that would reshape its levels.
  await live.startMicrophone({echoCancellation: false, noiseSuppression: false,
                              autoGainControl: false});
}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig()) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(emulator: Emulator) -> AsyncIterator[RunningRelay]:
    settings = relay_settings(emulator, None, allowed_origins=("*",), demo_page=True)
    async with running_relay(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow_relay() -> AsyncIterator[RunningRelay]:
    """In front of an emulator that streams a long answer slower than it plays back, but
    with more audio per chunk than the chunk interval: the queue grows while the user is
    still listening, so a barge-in has something to flush."""
    config = EmulatorConfig(
        reply_chunk_chars=4, reply_chunk_interval_seconds=0.6, speech_seconds_per_char=0.3
    )
    async with Emulator(config) as emu:
        settings = relay_settings(emu, None, allowed_origins=("*",), demo_page=True)
        async with running_relay(settings) as running:
            yield running


async def new_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport={"width": 900, "height": 620})
    page = await context.new_page()
    lines = console_lines(page)
    await page.goto(url)
    return page, lines


async def test_the_demo_page_answers_speech_with_audio_that_plays_and_both_transcripts(
    browser: Browser, relay: RunningRelay, microphone: Microphone
) -> None:
    page, lines = await new_page(browser, f"{relay.http_url}/#key={API_KEY}")
    await page.click("#start")
    await page.wait_for_function(
        """() => document.querySelector("#you").textContent.includes("s of speech]")
             && document.querySelector("#model-said").textContent.includes("Reply 1")
             && window.demoSession.player.playedSeconds > 0.5""",
        timeout=TURN_TIMEOUT_MS,
    )
    said = await page.text_content("#model-said")
    heard = await page.text_content("#you")
    played = await page.evaluate("window.demoSession.player.playedSeconds")
    assert said is not None
    assert heard is not None
    assert 'Reply 1: you said "[' in said, lines
    assert "s of speech]" in heard
    # The emulator measured the speech it got: had the kit resampled Chromium's 44.1 kHz
    # wrongly, the same sentence would last a third or three times as long at 16 kHz.
    heard_seconds = float(re.search(r"\[(\d+\.\d+) s of speech\]", heard).group(1))  # type: ignore[union-attr]
    assert abs(heard_seconds - microphone.spoken_seconds) < 0.6, (heard, microphone)
    assert played > 0.5  # seconds of non-silent samples that went through to the output
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / "demo-answer.png"))
    await page.click("#stop")
    await page.wait_for_function("document.querySelector('#status').textContent.includes('1000')")
    await page.context.close()


async def test_a_refused_page_shows_the_relay_s_reason(
    browser: Browser, relay: RunningRelay
) -> None:
    page, _ = await new_page(browser, f"{relay.http_url}/#key=lr_wrong_{'w' * 32}")
    await page.click("#start")
    await page.wait_for_function(
        "document.querySelector('#status').textContent.includes('Session ended')"
    )
    status = await page.text_content("#status")
    assert status is not None
    assert "(4401)" in status
    assert "the API key is not recognised" in status
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / "demo-refused.png"))
    await page.context.close()


async def test_speaking_over_the_answer_flushes_its_playback(
    browser: Browser, slow_relay: RunningRelay
) -> None:
    page, lines = await new_page(browser, f"{slow_relay.http_url}/")
    await page.evaluate(START_KIT, {"url": slow_relay.url, "token": API_KEY, "model": MODEL})
    await page.wait_for_function(
        "window.events.some((e) => e.name === 'interrupted')", timeout=TURN_TIMEOUT_MS
    )
    flushed = await page.evaluate(
        "window.events.find((e) => e.name === 'interrupted').detail.flushedSeconds"
    )
    assert flushed > 0, lines  # there was queued audio, and the flush dropped it
    assert await page.evaluate("window.live.player.queuedSeconds") < 0.05
    # The meter after the queue hears the output fall silent.
    await page.wait_for_function("window.live.player.sounding === false", timeout=5_000)
    await page.evaluate("window.live.close()")
    await page.context.close()


async def answer_latencies(page: Page, url: str, token: str | None, model: str) -> list[float]:
    await page.evaluate(START_KIT, {"url": url, "token": token, "model": model})
    await page.wait_for_function("window.live.latencies.length >= 2", timeout=2 * TURN_TIMEOUT_MS)
    latencies: list[float] = await page.evaluate("window.live.latencies.slice(0, 2)")
    await page.evaluate("window.live.close()")
    return latencies


@pytest.mark.timeout(300)  # four spoken turns in real time, on a loaded machine
async def test_end_of_speech_to_first_audio_through_the_relay_and_direct(
    browser: Browser, relay: RunningRelay, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    page, lines = await new_page(browser, f"{relay.http_url}/")
    measured: dict[str, list[float]] = {}
    measured["through the relay"] = await answer_latencies(page, relay.url, API_KEY, MODEL)
    direct = live_url(emulator.base_url, "v1beta1")
    measured["direct to the emulator"] = await answer_latencies(
        page, direct, None, EMULATOR_MODEL_PATH
    )
    await page.context.close()
    for path, values in measured.items():
        assert len(values) == 2, (path, lines)
        # Both paths wait for the emulator's 500 ms of silence before it answers.
        assert all(value > 0 for value in values), (path, values)
    with capsys.disabled():
        print("\nend of speech -> first audio played in Chromium (ms; VAD silence included)")
        print(f"{'path':26} {'answer 1':>9} {'answer 2':>9} {'median':>8}")
        for path, values in measured.items():
            row: list[Any] = [f"{v:9.0f}" for v in values]
            print(f"{path:26} {' '.join(row)} {statistics.median(values):8.0f}")
