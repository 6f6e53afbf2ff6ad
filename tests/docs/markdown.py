"""Reading the project's Markdown the way GitHub and MyST do: headings, their anchors, links and
fenced code blocks (outside fences only, so a `# comment` in a shell block is no heading)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>.*)$")
HEADING = re.compile(r"^(?P<level>#{1,6}) (?P<title>.+?)\s*#*\s*$")
# [text](target) and ![alt](target); the text may hold `code` but no nested brackets.
LINK = re.compile(r"!?\[[^\]\n]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # 1-based line of the opening fence


def markdown_pages() -> list[Path]:
    """The README, every page under docs/ and the Markdown the docs include."""
    return [README, *sorted(DOCS.glob("*.md")), ROOT / "docker" / "kubernetes" / "README.md"]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened["fence"]
        elif fence is not None and line.startswith(fence) and not line[len(fence) :].strip():
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def slug(title: str) -> str:
    """The anchor GitHub and MyST (`myst_heading_anchors`) give a heading: same algorithm."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower().replace(" ", "-"))


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; repeated headings get -1, -2 ... as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text()):
        if heading := HEADING.match(line):
            base = slug(heading["title"])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code."""
    found = []
    for number, line in _prose_lines(path.read_text()):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match["target"]))
    return found


def code_blocks(path: Path, language: str) -> list[Block]:
    blocks = []
    fence: str | None = None
    info = ""
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if fence is None:
            if opened := FENCE.match(line):
                fence, info, start, body = opened["fence"], opened["info"].strip(), number, []
        elif line.startswith(fence) and not line[len(fence) :].strip():
            if info == language:
                blocks.append(Block(language, "\n".join(body) + "\n", start))
            fence = None
        else:
            body.append(line)
    return blocks


def block_containing(path: Path, language: str, marker: str) -> Block:
    """The one `language` block of `path` that contains `marker`."""
    [block] = [b for b in code_blocks(path, language) if marker in b.text]
    return block
