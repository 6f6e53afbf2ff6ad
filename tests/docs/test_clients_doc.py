"""docs/clients.md shows the settings the current-model tests run: every line of a snippet
marked `<!-- same as tests/... -->` must be a line of that file, so the page cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGE = (ROOT / "docs" / "clients.md").read_text()
MARKED = re.compile(
    r"<!-- same as (?P<path>\S+) -->\n```(?:python|js)\n(?P<code>.*?)\n```", re.DOTALL
)
SNIPPETS = [(m["path"], m["code"]) for m in MARKED.finditer(PAGE)]


def test_the_page_marks_its_current_model_snippets() -> None:
    assert {path for path, _ in SNIPPETS} == {
        "tests/relay/test_current_models.py",
        "tests/js/current_model.mjs",
    }


@pytest.mark.parametrize(
    ("path", "code"), SNIPPETS, ids=[f"{p}#{i}" for i, (p, _) in enumerate(SNIPPETS)]
)
def test_each_snippet_is_the_code_a_test_runs(path: str, code: str) -> None:
    tested = {line.strip() for line in (ROOT / path).read_text().splitlines()}
    missing = [line for line in code.splitlines() if line.strip() and line.strip() not in tested]
    assert not missing, f"lines of docs/clients.md not in {path}: {missing}"
