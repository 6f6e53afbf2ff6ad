"""Every relative link in the README and docs/ leads to a file that exists, and every #anchor to
a heading of that file, with the anchors GitHub and the Sphinx build (MyST) both derive."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.docs.markdown import ROOT, anchors, links, markdown_pages, slug

EXTERNAL = ("http://", "https://", "mailto:")


def broken_links(path: Path) -> list[str]:
    problems = []
    for line, target in links(path):
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.name}:{line}: {target}"
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{where}: no heading with that anchor")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{where}: anchors only work into Markdown pages")
    return problems


@pytest.mark.parametrize("path", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Real heading: `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#real-heading-code) [self](#page)\n"
        "[gone](missing.md) [bad](other.md#no-such-heading) `[in code](missing.md)`\n"
        "```md\n[in a fence](missing.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert "missing.md: no such file" in problems[0]
    assert "other.md#no-such-heading: no heading" in problems[1]


@pytest.mark.parametrize(
    ("title", "anchor"),
    [
        ("Session tokens: `POST /v1/tokens`", "session-tokens-post-v1tokens"),
        ("A browser app, end to end", "a-browser-app-end-to-end"),
        ("`live-relay loadtest`", "live-relay-loadtest"),
    ],
)
def test_anchors_follow_githubs_slugs(title: str, anchor: str) -> None:
    assert slug(title) == anchor
