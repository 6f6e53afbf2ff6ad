"""The README stays true: every setting with its default, every section the issues ask for.

Metrics and settings named in the prose are checked by tests/ops/test_docs.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import COMMANDS
from app.settings import describe_settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def settings_rows() -> list[str]:
    return [
        f"| `{variable}` | `{default}` | {description} |"
        for variable, default, description in describe_settings()
    ]


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    missing = [row for row in settings_rows() if row not in README]
    assert not missing, "README's configuration table is out of date; these rows belong:\n" + (
        "\n".join(missing)
    )


@pytest.mark.parametrize(
    "section",
    [
        "## Quick start",
        "## Endpoints",
        "## Close codes",
        "## Configuration",
        "## Authentication",
        "## Quotas",
        "## Offline emulator",
        "## Metrics",
        "## Logs",
        "## Run with Docker",
        "## Scale out",
        "## Performance",
        "## How it works",
    ],
)
def test_the_readme_has_each_section_the_product_promises(section: str) -> None:
    assert f"\n{section}\n" in README


def test_the_two_commands_come_first() -> None:
    assert README.index("make run") < README.index("## Quick start")
    assert README.index("make test") < README.index("## Quick start")


def test_every_command_is_documented() -> None:
    assert all(f"live-relay {name}" in README or f"`{name}`" in README for name in COMMANDS)
