"""`live-relay --help` as a newcomer reads it: what the program is for, in plain words, and where
to start; no word of how the code is laid out."""

from __future__ import annotations

import subprocess
import sys

JARGON = ("module", "configure", "sub-command", "uvicorn", "in-process", "`run`")


def test_the_help_says_what_it_is_for_and_where_to_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    description = text.split("positional arguments")[0]
    assert "Gemini" in description
    assert "apps" in description
    for word in JARGON:
        assert word not in text, word
    assert "New here? Run `live-relay dev` (or `make run`)" in text
    # the command to start with is listed first
    assert text.index(" dev try it") < text.index(" serve ")
