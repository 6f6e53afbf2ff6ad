"""The docs and the Kubernetes example name every metric and only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.ledger.metrics import LedgerMetrics
from app.metrics import RelayMetrics, metrics_registry
from app.settings import Settings
from tests.ops.deployment_files import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KUBERNETES_README = ROOT / "docker" / "kubernetes" / "README.md"
SETTINGS = {f"RELAY_{name.upper()}" for name in Settings.model_fields}


def headings(path: Path) -> set[str]:
    return set(re.findall(r"^## (.+)$", path.read_text(), flags=re.MULTILINE))


def test_kubernetes_readme_covers_sizing_and_redis_availability() -> None:
    assert {"Sizing", "Redis high availability"} <= headings(KUBERNETES_README)


def test_every_relay_metric_is_documented() -> None:
    registry = metrics_registry()
    RelayMetrics(registry)
    text = OPERATIONS.read_text()
    for family in registry.collect():
        if family.name.startswith("relay_"):
            exposed = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{exposed}`" in text, exposed


def test_metrics_and_log_settings_are_documented() -> None:
    text = OPERATIONS.read_text()
    for setting in SETTINGS:
        if setting.startswith(("RELAY_METRICS_", "RELAY_LOG_")):
            assert setting in text, setting


@pytest.mark.parametrize(
    "path", [*PAGES, KUBERNETES_README], ids=lambda p: str(p.relative_to(ROOT))
)
def test_docs_name_only_settings_that_exist(path: Path) -> None:
    named = set(re.findall(r"(?<![A-Z_])RELAY_[A-Z0-9_]+", path.read_text()))
    assert named - SETTINGS == set()


def test_every_ledger_metric_is_documented() -> None:
    registry = metrics_registry()
    LedgerMetrics(registry)
    text = (ROOT / "docs" / "usage.md").read_text()
    for family in registry.collect():
        if family.name.startswith("relay_"):
            exposed = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{exposed}`" in text, exposed
