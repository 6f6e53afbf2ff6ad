"""What tokens cost: a price table per model and modality, in USD per million tokens.

The built-in table holds Google's published list prices for the Live API models the relay
allows by default (see `PRICES_SOURCE` and docs/usage.md); `RELAY_LEDGER_PRICES_FILE` replaces
it with a TOML file of the same shape. Cost is computed from the ledger's token counts at
report time, never estimated from bytes, so a corrected price re-prices past usage too.

How a session's tokens are priced:
- prompt and tool-use prompt tokens at the input price of their modality;
- cached tokens (part of the prompt) at the cached-input price instead of the input price;
- response tokens at the output price of their modality, thinking tokens at the TEXT output
  price;
- tokens a kind's details do not attribute to a modality at that kind's TEXT price.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.ledger.usage import MODALITIES, kind_column, modality_column

PER_TOKENS = 1_000_000

PRICES_SOURCE = (
    "Google's list prices for the Gemini Live API (Vertex AI generative AI pricing page and "
    "Google's answers on its developer forum), per 1M tokens, as published in late 2025"
)
PRICES_AS_OF = "2025-12"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, by modality (TEXT, AUDIO, VIDEO, IMAGE)."""

    input: Mapping[str, float]
    output: Mapping[str, float]
    cached_input: Mapping[str, float] = field(default_factory=dict)  # default: input

    def _rate(self, table: Mapping[str, float], modality: str) -> float:
        return table.get(modality, table.get("TEXT", 0.0))

    def cost(self, tokens: Mapping[str, int | None]) -> float:
        """USD for token columns (usage.TOKEN_COLUMNS; None counts 0)."""

        def count(name: str) -> int:
            return tokens.get(name) or 0

        cached_table = self.cached_input or self.input
        micro = 0.0
        for kind, table in (("prompt", self.input), ("tool_use", self.input)):
            attributed = 0
            for modality in MODALITIES:
                part = count(modality_column(kind, modality))
                micro += part * self._rate(table, modality)
                attributed += part
            micro += max(count(kind_column(kind)) - attributed, 0) * self._rate(table, "TEXT")
        attributed = 0
        for modality in MODALITIES:
            part = count(modality_column("cached", modality))
            micro += part * (self._rate(cached_table, modality) - self._rate(self.input, modality))
            attributed += part
        rest = max(count(kind_column("cached")) - attributed, 0)
        micro += rest * (self._rate(cached_table, "TEXT") - self._rate(self.input, "TEXT"))
        attributed = 0
        for modality in MODALITIES:
            part = count(modality_column("response", modality))
            micro += part * self._rate(self.output, modality)
            attributed += part
        rest = max(count(kind_column("response")) - attributed, 0)
        micro += rest * self._rate(self.output, "TEXT")
        micro += count(kind_column("thinking")) * self._rate(self.output, "TEXT")
        return micro / PER_TOKENS


_FLASH_2_0 = ModelPrice(
    input={"TEXT": 0.35, "AUDIO": 2.10, "VIDEO": 2.10, "IMAGE": 2.10},
    output={"TEXT": 1.50, "AUDIO": 8.50},
)
_FLASH_2_5 = ModelPrice(
    input={"TEXT": 0.50, "AUDIO": 3.00, "VIDEO": 3.00, "IMAGE": 3.00},
    output={"TEXT": 2.00, "AUDIO": 12.00},
)

# Default models no price source we could check names a list price for (docs/usage.md): their
# cost is null in reports, never guessed, until a prices file or the projects file gives one.
UNPRICED_DEFAULT_MODELS = frozenset(
    {"gemini-3.8-live", "gemini-3.8-live-extended-thinking", "gemini-3.5-transcribe-live"}
)

# Model name patterns (fnmatch), tried in order; the first that matches prices the model.
BUILT_IN_PRICES: Mapping[str, ModelPrice] = {
    "gemini-live-2.5-flash*": _FLASH_2_5,
    "gemini-2.5-flash*": _FLASH_2_5,
    "gemini-2.0-flash*": _FLASH_2_0,
}


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, ModelPrice]
    source: str
    as_of: str

    def for_model(self, model: str) -> ModelPrice | None:
        exact = self.models.get(model)
        if exact is not None:
            return exact
        for pattern, price in self.models.items():
            if fnmatch.fnmatchcase(model, pattern):
                return price
        return None

    def with_overrides(self, project: str, overrides: Mapping[str, ModelPrice]) -> PriceTable:
        """This table under a project's own prices (`[projects.NAME.prices]`), which are tried
        first."""
        if not overrides:
            return self
        models = dict(overrides) | {k: v for k, v in self.models.items() if k not in overrides}
        source = f"the projects file's prices of {project!r}, then {self.source}"
        return PriceTable(models, source, self.as_of)


BUILT_IN = PriceTable(BUILT_IN_PRICES, PRICES_SOURCE, PRICES_AS_OF)

Rate = Annotated[float, Field(ge=0)]
ModalityRates = dict[Annotated[str, Field(pattern="^(TEXT|AUDIO|VIDEO|IMAGE)$")], Rate]


class PriceEntry(BaseModel):
    """One model pattern's prices, in a prices file or a project's `prices` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: ModalityRates
    output: ModalityRates
    cached_input: ModalityRates = Field(default_factory=dict)

    def price(self) -> ModelPrice:
        return ModelPrice(dict(self.input), dict(self.output), dict(self.cached_input))


class _PricesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str
    as_of: str
    models: dict[str, PriceEntry]


class PricesFileError(Exception):
    """The prices file cannot be used; the message names the file and the problem."""


def load_prices(path: Path | None) -> PriceTable:
    """The built-in table, or the one in `path` (which replaces it whole)."""
    if path is None:
        return BUILT_IN
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = _PricesFile.model_validate(document)
    except OSError as exc:
        raise PricesFileError(f"cannot read prices file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise PricesFileError(f"invalid prices file {path}: {exc}") from None
    models = {name: entry.price() for name, entry in parsed.models.items()}
    return PriceTable(models, parsed.source, parsed.as_of)
