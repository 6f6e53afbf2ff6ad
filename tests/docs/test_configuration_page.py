"""docs/configuration.md is exactly what app/settings_doc.py renders from `Settings`, and what it
renders is true: every setting is there, and each default shown is the value the relay uses."""

from __future__ import annotations

import re

import pytest

from app.settings import Settings
from app.settings_doc import render, sections
from tests.docs.markdown import DOCS
from tests.ops.deployment_files import settings_from_environment

PAGE = DOCS / "configuration.md"
ROW = re.compile(r"^\| `(?P<variable>RELAY_\w+)` \| (?P<accepts>.*?) \| `(?P<default>.*?)` \| ")


def rows() -> dict[str, str]:
    """variable -> default, as the page shows them."""
    return {
        match["variable"]: match["default"].replace("\\|", "|")
        for line in PAGE.read_text().splitlines()
        if (match := ROW.match(line))
    }


def test_the_committed_page_matches_the_settings() -> None:
    assert PAGE.read_text() == render(), "docs/configuration.md is stale: run `make config-docs`"


def test_every_setting_has_one_row_in_one_section() -> None:
    grouped = [name for _, names in sections() for name in names]
    assert sorted(grouped) == sorted(Settings.model_fields)
    assert set(rows()) == {f"RELAY_{name.upper()}" for name in Settings.model_fields}


def test_each_default_shown_is_the_value_the_relay_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = {variable: default for variable, default in rows().items() if default != "(unset)"}
    shown = {v: ("" if d == "(none)" else d) for v, d in shown.items()}
    from_page = settings_from_environment(monkeypatch, shown)
    defaults = settings_from_environment(monkeypatch, {})
    assert from_page == defaults
    for variable, default in rows().items():
        if default == "(unset)":
            assert getattr(defaults, variable.removeprefix("RELAY_").lower()) is None, variable
