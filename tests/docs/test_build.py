"""`make docs` succeeds: Sphinx with MyST builds docs/ with warnings as errors, so a page outside
the table of contents, a cross-reference or #anchor that does not resolve, or an include that is
gone fails here. The build runs as `make docs` runs it, into a throwaway directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.docs.markdown import DOCS


def sphinx_build(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", source, output],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_documentation_builds_without_a_warning(tmp_path: Path) -> None:
    result = sphinx_build(DOCS, tmp_path / "html")
    assert result.returncode == 0, result.stderr
    built = {page.stem for page in (tmp_path / "html").glob("*.html")}
    assert {page.stem for page in DOCS.glob("*.md")} <= built


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    (source / "conf.py").write_text((DOCS / "conf.py").read_text())
    (source / "index.md").write_text(
        "# Home\n\n[there](other.md#no-such-heading)\n\n```{toctree}\nother\n```\n"
    )
    (source / "other.md").write_text("# Other\n")
    result = sphinx_build(source, tmp_path / "html")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr
