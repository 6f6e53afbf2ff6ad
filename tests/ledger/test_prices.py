"""Prices: the built-in table, a prices file that replaces it, and how each kind is priced."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ledger.prices import BUILT_IN, PricesFileError, load_prices
from app.ledger.usage import TOKEN_COLUMNS, UsageTotals

PRICES = """
source = "our contract with Google"
as_of = "2026-11-01"

[models."gemini-live-2.5-flash*"]
input = { TEXT = 1.0, AUDIO = 4.0 }
output = { TEXT = 5.0, AUDIO = 20.0 }
cached_input = { TEXT = 0.25 }
"""


def tokens_of(*reports: dict[str, object]) -> dict[str, int]:
    totals = UsageTotals()
    for report in reports:
        totals.add(report)
    return totals.tokens


def test_every_default_model_has_a_built_in_price_or_is_named_unpriced() -> None:
    from app.ledger.prices import UNPRICED_DEFAULT_MODELS
    from app.settings import DEFAULT_ALLOWED_MODELS

    for model in DEFAULT_ALLOWED_MODELS:
        priced = BUILT_IN.for_model(model) is not None
        assert priced != (model in UNPRICED_DEFAULT_MODELS), model
    assert BUILT_IN.for_model("some-other-model") is None


def test_a_prices_file_replaces_the_table_and_prices_each_kind(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    table = load_prices(path)
    assert (table.source, table.as_of) == ("our contract with Google", "2026-11-01")
    assert table.for_model("gemini-2.0-flash-exp") is None  # replaced, not merged
    price = table.for_model("gemini-live-2.5-flash")
    assert price is not None
    tokens = tokens_of(
        {
            "promptTokenCount": 1000,
            "candidatesTokenCount": 300,
            "cachedContentTokenCount": 400,
            "thoughtsTokenCount": 50,
            "toolUsePromptTokenCount": 20,
            # 100 prompt tokens are attributed to no modality: priced as TEXT.
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 500},
                {"modality": "AUDIO", "tokenCount": 400},
            ],
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 300}],
            "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 400}],
        }
    )
    expected = (
        600 * 1.0  # prompt TEXT (500 + 100 unattributed)
        + 400 * 4.0  # prompt AUDIO
        - 400 * (1.0 - 0.25)  # cached TEXT at the cached price instead
        + 300 * 20.0  # response AUDIO
        + 50 * 5.0  # thinking at the TEXT output price
        + 20 * 1.0  # tool-use prompt, unattributed: TEXT input
    ) / 1_000_000
    assert price.cost(tokens) == pytest.approx(expected)
    assert tokens["total_tokens"] == 1000 + 300 + 50 + 20  # computed when not reported


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not toml [", "invalid prices file"),
        ('source = "x"\nas_of = "y"\n[models.m]\ninput = { TEXT = -1 }\noutput = {}', "input"),
        ('source = "x"\nas_of = "y"\n[models.m]\ninput = { SMELL = 1 }\noutput = {}', "SMELL"),
        ('as_of = "y"\n[models]', "source"),
    ],
)
def test_a_bad_prices_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PricesFileError) as refused:
        load_prices(path)
    assert str(path) in str(refused.value)
    assert says in str(refused.value)


def test_usage_reports_add_up_and_no_report_is_not_zero() -> None:
    totals = UsageTotals()
    assert totals.reports == 0
    totals.add({"promptTokenCount": 7, "totalTokenCount": 7})
    totals.add(
        {"responseTokenCount": 3, "responseTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]}
    )
    assert totals.reports == 2
    assert totals.tokens["prompt_tokens"] == 7
    assert totals.tokens["response_text"] == 3  # Developer API names are read too
    assert totals.tokens["total_tokens"] == 10
    assert set(totals.tokens) == set(TOKEN_COLUMNS)


def test_the_prices_file_example_of_the_docs_loads(tmp_path: Path) -> None:
    from tests.docs.markdown import DOCS, block_containing

    example = block_containing(DOCS / "usage.md", "toml", "cached_input").text
    path = tmp_path / "prices.toml"
    path.write_text(example)
    price = load_prices(path).for_model("gemini-live-2.5-flash-native-audio")
    assert price is not None
    assert price.cached_input == {"TEXT": 0.125}


def test_the_budgets_example_of_the_docs_loads(tmp_path: Path) -> None:
    from app.auth.projects import load_projects
    from app.settings import Settings
    from tests.docs.markdown import DOCS, block_containing

    example = block_containing(DOCS / "usage.md", "toml", "[projects.acme.budgets]").text
    path = tmp_path / "projects.toml"
    path.write_text("[projects.acme]\n" + example)
    [acme] = load_projects(path, Settings(_env_file=None))  # type: ignore[call-arg]
    assert acme.budgets.tokens_per_day == 50_000_000
    assert acme.budgets.usd_per_month == 2500.0
    assert acme.budgets.user_tokens_per_month == 20_000_000


def test_the_project_prices_example_of_the_docs_loads(tmp_path: Path) -> None:
    from app.auth.projects import load_projects
    from app.settings import Settings
    from tests.docs.markdown import DOCS, block_containing

    example = block_containing(DOCS / "usage.md", "toml", "[projects.acme.prices.").text
    path = tmp_path / "projects.toml"
    path.write_text("[projects.acme]\n" + example)
    [acme] = load_projects(path, Settings(_env_file=None))  # type: ignore[call-arg]
    table = BUILT_IN.with_overrides("acme", acme.prices)
    price = table.for_model("gemini-live-2.5-flash")
    assert price is not None
    assert price.output["AUDIO"] == 9.60
    assert table.for_model("gemini-2.0-flash-exp") is BUILT_IN.for_model("gemini-2.0-flash-exp")
