"""docs/production.md stays true: its settings, metrics, alert rules, messages and fixes are the
ones the relay really has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from app.doctor import CREDENTIALS_FIX, HANDSHAKE_FIXES, PROJECT_FIX
from app.exit_status import ExitStatus
from app.metrics import RelayMetrics, metrics_registry
from app.relay.upstream.upstream import FAILURE_CAUSES
from app.settings import Settings, describe_settings
from tests.support.token_server import write_authorized_user

PAGE = Path(__file__).resolve().parents[2] / "docs" / "production.md"
TEXT = PAGE.read_text()
SETTINGS = {f"RELAY_{name.upper()}" for name in Settings.model_fields}


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", TEXT, flags=re.MULTILINE | re.DOTALL)


def exported_series() -> dict[str, set[str]]:
    """Every relay_* name Prometheus sees (families and their series) -> its label names."""
    metrics = RelayMetrics(metrics_registry())
    series: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, kind = metric._name, metric._type  # prometheus_client keeps them private
        labels = set(metric._labelnames)
        series[name] = labels
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        for suffix in suffixes.get(kind or "", []):
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def test_the_page_names_only_settings_that_exist() -> None:
    assert set(re.findall(r"RELAY_[A-Z0-9_]+", TEXT)) - SETTINGS == set()


def test_the_settings_table_matches_the_settings_defaults_and_descriptions() -> None:
    rows = {variable: (default, text) for variable, default, text in describe_settings()}
    for variable in ("RELAY_VERTEX_CA_FILE", "RELAY_VERTEX_ALLOW_INSECURE"):
        default, description = rows[variable]
        assert f"| `{variable}` | `{default}` | {description} |" in TEXT


def test_every_metric_named_exists_with_the_labels_used() -> None:
    series = exported_series()
    for name in set(re.findall(r"relay_[a-z_]+", TEXT)):
        assert name.rstrip("_") in series, name
    for name, matchers in re.findall(r"(relay_[a-z_]+)\{([^}]*)\}", TEXT):
        used = {label.strip() for label in re.findall(r"(\w+)\s*(?:=~|=|,|$)", matchers)}
        assert used <= series[name], (name, used)


def test_the_alert_rules_are_valid_prometheus_rule_groups_over_real_series() -> None:
    [rules_yaml] = code_blocks("yaml")
    document: dict[str, Any] = yaml.safe_load(rules_yaml)
    series = exported_series()
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["expr"].count("(") == rule["expr"].count(")")
        for name in re.findall(r"relay_[a-z_]+", rule["expr"]):
            assert name in series, name
        for causes in re.findall(r'cause=~"([^"]+)"', rule["expr"]):
            assert set(causes.split("|")) <= set(FAILURE_CAUSES)


def test_the_cause_table_lists_every_cause() -> None:
    for cause in FAILURE_CAUSES:
        assert f"| `{cause}` |" in TEXT, cause


def test_the_doctor_fixes_quoted_are_the_doctors() -> None:
    assert HANDSHAKE_FIXES["tls_certificate"] in TEXT
    assert PROJECT_FIX in TEXT
    assert "gcloud auth application-default login" in CREDENTIALS_FIX


def test_the_start_up_refusal_shown_is_what_serve_prints(tmp_path: Path) -> None:
    [shown] = [block for block in code_blocks("") if block.startswith("live-relay: ")]
    missing_ca = re.search(r"RELAY_VERTEX_CA_FILE: cannot use (\S+):", shown)
    assert missing_ca is not None
    assert not Path(missing_ca.group(1)).exists()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env |= {
        "RELAY_VERTEX_PROJECT": "p",
        "RELAY_VERTEX_CA_FILE": missing_ca.group(1),
        "RELAY_API_KEYS": "lr_doc_example_" + "k" * 24,
        # credentials that load: the CA file is the one problem
        "RELAY_VERTEX_CREDENTIALS_FILE": str(write_authorized_user(tmp_path / "adc.json")),
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitStatus.FILE
    assert result.stderr == shown
