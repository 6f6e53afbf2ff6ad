"""Chromium (Debian's, driven by playwright: no browser download) with a fake microphone.

One browser per test module keeps the suite to a handful of launches; each test opens its own
context (fresh permissions, fresh pages). The microphone plays a WAV that espeak-ng speaks and
sox pads, on a loop: speech, then silence long enough for the emulator to end the turn and
answer, then the speech again (which barges in on a long answer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

# Debian's chromium by default; elsewhere (Ubuntu's is a snap stub) point this at a real
# Chromium or Chrome binary.
CHROMIUM = Path(os.environ.get("LIVE_RELAY_CHROMIUM", "/usr/bin/chromium"))
SPOKEN = "Hello relay. What is the weather like in Paris today?"
SILENCE_AFTER_SECONDS = 4.0
# Flags that work in containers; the fake devices stand in for a microphone and its prompt.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Pages that playwright serves by request routing have no IP address space; Local Network
    # Access would then block their sockets to 127.0.0.1 as if they came from the internet.
    "--disable-features=LocalNetworkAccessChecks",
]

_missing = [
    what
    for what, present in (
        ("chromium", CHROMIUM.exists()),
        ("espeak-ng", shutil.which("espeak-ng") is not None),
        ("sox", shutil.which("sox") is not None),
    )
    if not present
]
try:
    from playwright.async_api import Browser, async_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    _missing.append("playwright")

browser_required = pytest.mark.skipif(
    bool(_missing),
    reason=f"missing {', '.join(_missing)}: `make test` installs them (apt-get, as root)",
)


@dataclass(frozen=True)
class Microphone:
    wav: Path  # what the fake capture device plays, on a loop
    spoken_seconds: float  # the sentence alone, as espeak-ng wrote it


def make_speech_wav(directory: Path) -> Microphone:
    """48 kHz mono 16-bit: 0.3 s of silence, the sentence, then SILENCE_AFTER_SECONDS."""
    spoken = directory / "spoken.wav"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(spoken), SPOKEN], check=True)
    padded = directory / "microphone.wav"
    subprocess.run(
        [
            "sox",
            str(spoken),
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            str(padded),
            "pad",
            "0.3",
            str(SILENCE_AFTER_SECONDS),
        ],
        check=True,
    )
    seconds = subprocess.run(
        ["sox", "--i", "-D", str(spoken)], check=True, capture_output=True, text=True
    ).stdout
    return Microphone(padded, float(seconds))


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Microphone:
    return make_speech_wav(tmp_path_factory.mktemp("microphone"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(microphone: Microphone) -> AsyncIterator[Browser]:
    # playwright gives every launch a fresh temporary profile (--user-data-dir) of its own.
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone.wav}"]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            await launched.close()


def console_lines(page: Any) -> list[str]:
    """Collect what the page logs, to show when a test fails."""
    lines: list[str] = []
    page.on("console", lambda message: lines.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: lines.append(f"pageerror: {error}"))
    return lines
