"""The README stays short and points into docs/, where each topic the product promises has its
page. Metrics and settings named in the prose are checked by tests/ops/test_docs.py."""

from __future__ import annotations

import pytest

from app.cli import COMMANDS
from tests.docs.markdown import DOCS, README, links

TOPIC_PAGES = [
    "index",
    "clients",
    "authentication",
    "quotas",
    "usage",
    "close-codes",
    "emulator",
    "operations",
    "performance",
    "configuration",
    "development",
]


def test_the_readme_is_a_few_screens() -> None:
    assert len(README.read_text().splitlines()) <= 160


def test_the_two_commands_come_first() -> None:
    text = README.read_text()
    assert text.index("make run") < text.index("## Quick start")
    assert text.index("make test") < text.index("## Quick start")


@pytest.mark.parametrize(
    "client", ["**Python**", "**JavaScript**", "**A browser**"], ids=lambda c: c.strip("*")
)
def test_the_readme_has_a_quick_start_for_each_client_kind(client: str) -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert client in quick_start


@pytest.mark.parametrize("page", TOPIC_PAGES)
def test_each_topic_has_a_page_linked_from_the_readme(page: str) -> None:
    assert (DOCS / f"{page}.md").is_file()
    targets = {target.partition("#")[0] for _, target in links(README)}
    assert f"docs/{page}.md" in targets


def test_every_command_is_documented() -> None:
    text = "\n".join(path.read_text() for path in DOCS.glob("*.md"))
    assert all(f"live-relay {name}" in text for name in COMMANDS)
