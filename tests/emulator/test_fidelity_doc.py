"""docs/emulator-fidelity.md stays true: every test it cites exists, every setting it names too."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from app.emulator import EmulatorConfig, Faults

ROOT = Path(__file__).parents[2]
PAGE = (ROOT / "docs" / "emulator-fidelity.md").read_text()


def test_every_cited_test_exists() -> None:
    defined = {
        match.group(1)
        for path in (ROOT / "tests" / "emulator").glob("test_*.py")
        for match in re.finditer(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE)
    }
    cited = set(re.findall(r"`(test_\w+)`", PAGE))
    assert cited, "the page cites no test"
    assert not cited - defined, f"cited but not defined: {sorted(cited - defined)}"


def test_every_setting_named_with_a_value_exists() -> None:
    settings = {field.name for field in dataclasses.fields(EmulatorConfig)} | {
        field.name for field in dataclasses.fields(Faults)
    }
    named = set(re.findall(r"`(\w+)=", PAGE))
    assert named, "the page names no setting"
    assert not named - settings, f"named on the page but no setting: {sorted(named - settings)}"
