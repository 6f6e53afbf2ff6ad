"""docs/browsers.md shows the code the browser tests run: every line of a snippet marked
`<!-- same as tests/... -->` must be a line of that test file, so the page cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGE = (ROOT / "docs" / "browsers.md").read_text()
MARKED = re.compile(r"<!-- same as (?P<path>\S+) -->\n```js\n(?P<code>.*?)\n```", re.DOTALL)
SNIPPETS = [(m["path"], m["code"]) for m in MARKED.finditer(PAGE)]


def test_the_page_marks_its_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize(
    ("path", "code"), SNIPPETS, ids=[f"{p}#{i}" for i, (p, _) in enumerate(SNIPPETS)]
)
def test_each_snippet_is_the_code_a_test_runs(path: str, code: str) -> None:
    tested = {line.strip() for line in (ROOT / path).read_text().splitlines()}
    missing = [line for line in code.splitlines() if line.strip() and line.strip() not in tested]
    assert not missing, f"lines of docs/browsers.md not in {path}: {missing}"


def test_the_screenshots_exist() -> None:
    for image in re.findall(r"\]\((images/[^)]+)\)", PAGE):
        assert (ROOT / "docs" / image).is_file(), image
