"""Tokens as Vertex reports them in `usageMetadata`, by kind and modality.

Each `usageMetadata` the upstream sends is billed on its own (a Live turn bills its whole
context again), so a session's usage is the sum of every report, never the last one.

Kinds and the fields they come from (Vertex names first; the Gemini Developer API's `response*`
names are read too):

| kind     | count field                                     | details by modality               |
|----------|-------------------------------------------------|-----------------------------------|
| prompt   | promptTokenCount                                | promptTokensDetails               |
| response | candidatesTokenCount / responseTokenCount       | candidatesTokensDetails / response|
| cached   | cachedContentTokenCount (part of the prompt)    | cacheTokensDetails                |
| thinking | thoughtsTokenCount                              | (none)                            |
| tool_use | toolUsePromptTokenCount                         | toolUsePromptTokensDetails        |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

KINDS: Final = ("prompt", "response", "cached", "thinking", "tool_use")
# The kinds Vertex breaks down by modality.
DETAILED_KINDS: Final = ("prompt", "response", "cached", "tool_use")
MODALITIES: Final = ("TEXT", "AUDIO", "VIDEO", "IMAGE")

_COUNT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "prompt": ("promptTokenCount",),
    "response": ("candidatesTokenCount", "responseTokenCount"),
    "cached": ("cachedContentTokenCount",),
    "thinking": ("thoughtsTokenCount",),
    "tool_use": ("toolUsePromptTokenCount",),
}
_DETAIL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "prompt": ("promptTokensDetails",),
    "response": ("candidatesTokensDetails", "responseTokensDetails"),
    "cached": ("cacheTokensDetails",),
    "tool_use": ("toolUsePromptTokensDetails",),
}


def kind_column(kind: str) -> str:
    return f"{kind}_tokens"


def modality_column(kind: str, modality: str) -> str:
    return f"{kind}_{modality.lower()}"


# Every token column of a record, in a fixed order (the ledger's table has one of each).
TOKEN_COLUMNS: Final = (
    *(kind_column(kind) for kind in KINDS),
    "total_tokens",
    *(modality_column(kind, modality) for kind in DETAILED_KINDS for modality in MODALITIES),
)


def _count(value: object) -> int:
    # A count the upstream sends is an int; anything else (absent, negative, a string) counts 0.
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _first(report: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in report:
            return report[name]
    return None


def read_report(report: Mapping[str, Any]) -> dict[str, int]:
    """One `usageMetadata` object as token columns (absent counts are 0)."""
    tokens = dict.fromkeys(TOKEN_COLUMNS, 0)
    for kind in KINDS:
        tokens[kind_column(kind)] = _count(_first(report, _COUNT_FIELDS[kind]))
    for kind in DETAILED_KINDS:
        details = _first(report, _DETAIL_FIELDS[kind])
        if not isinstance(details, list):
            continue
        for detail in details:
            if not isinstance(detail, dict):
                continue
            modality = detail.get("modality")
            if modality in MODALITIES:
                tokens[modality_column(kind, modality)] += _count(detail.get("tokenCount"))
    total = _count(report.get("totalTokenCount"))
    if total == 0:
        # Vertex's total is prompt + candidates + thoughts + tool-use prompt; cached tokens are
        # part of the prompt already.
        total = sum(tokens[kind_column(kind)] for kind in KINDS if kind != "cached")
    tokens["total_tokens"] = total
    return tokens


class UsageTotals:
    """The sum of a session's usage reports. `reports == 0` means the upstream reported no
    usage at all, which a record keeps apart from a report of zero tokens.

    One per live session: the sums are a list in `TOKEN_COLUMNS` order (about 240 bytes, a
    dict of the same would be over 1 KB)."""

    __slots__ = ("_sums", "reports")

    def __init__(self) -> None:
        self.reports = 0
        self._sums = [0] * len(TOKEN_COLUMNS)

    def add(self, report: Mapping[str, Any]) -> dict[str, int]:
        """Add one report; return its columns (for metrics)."""
        columns = read_report(report)
        self.reports += 1
        sums = self._sums
        for index, name in enumerate(TOKEN_COLUMNS):
            sums[index] += columns[name]
        return columns

    @property
    def tokens(self) -> dict[str, int]:
        """The sums by column name."""
        return dict(zip(TOKEN_COLUMNS, self._sums, strict=True))
