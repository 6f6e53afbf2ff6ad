"""The alerting rules in docs/operations.md: valid for Prometheus (promtool check rules), built
only on series the relay exports, and firing when replayed series say they should (promtool
test rules), so a reader can paste them as they are."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.metrics import RelayMetrics, metrics_registry
from tests.docs.markdown import DOCS, block_containing
from tests.ops.deployment_files import ROOT

PROMTOOL_UNPACKED = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool"
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def promtool() -> str:
    found = str(PROMTOOL_UNPACKED) if PROMTOOL_UNPACKED.exists() else shutil.which("promtool")
    if found is None:
        pytest.skip("no promtool (`make test` unpacks Debian's Prometheus into .cache/)")
    return found


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "live-relay-alerts.yml"
    path.write_text(block_containing(DOCS / "operations.md", "yaml", "groups:").text)
    return path


def test_the_rules_are_valid_for_prometheus(rules_file: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_use_only_series_the_relay_exports(rules_file: Path) -> None:
    registry = metrics_registry()
    RelayMetrics(registry)
    exported = {
        family.name + suffix
        for family in registry.collect()
        for suffix in SERIES_SUFFIXES.get(family.type, ("",))
    }
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    used = set(re.findall(r"\brelay_\w+", " ".join(rule["expr"] for rule in rules)))
    assert used
    assert used <= exported, used - exported


def alert(name: str, at: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}],
    }


def quiet(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


REPLAYS: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [
            {"series": 'up{job="live-relay", instance="relay:8080"}', "values": "1 1 0 0 0 0"}
        ],
        "alert_rule_test": [
            quiet("LiveRelayDown", "3m"),  # down for 1 minute: not yet
            alert(
                "LiveRelayDown",
                "5m",
                {"severity": "page", "job": "live-relay", "instance": "relay:8080"},
                "relay:8080 has not answered a scrape for 2 minutes",
            ),
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {
                "series": 'relay_sessions_total{project="acme", outcome="client_closed"}',
                "values": "0+10x20",
            },
            {
                "series": 'relay_sessions_total{project="acme", outcome="upstream_unavailable"}',
                "values": "0+2x20",
            },
            {
                "series": 'relay_sessions_total{project="acme", outcome="error"}',
                "values": "0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
            },
            {"series": 'relay_fail_open_admissions_total{project="acme"}', "values": "0x20"},
        ],
        "alert_rule_test": [
            quiet("LiveRelaySessionErrors", "4m"),
            alert(
                "LiveRelaySessionErrors",
                "6m",
                {"severity": "page", "project": "acme"},
                "sessions of acme ended by an internal error",
            ),
            quiet("LiveRelayUpstreamFailing", "5m"),  # 2 of 12 fail, but not for 5 minutes yet
            alert(
                "LiveRelayUpstreamFailing",
                "12m",
                {"severity": "warning"},
                "16.67% of sessions fail at the upstream",
            ),
            quiet("LiveRelayQuotasNotEnforced", "15m"),
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # A slowloris wave: 3 half-sent requests a second reaped at their deadline.
            {
                "series": 'relay_connections_refused_total{reason="request_timeout"}',
                "values": "0+180x30",
            },
            {"series": 'relay_connections_refused_total{reason="uri_too_long"}', "values": "0x30"},
            # 100 sessions a minute; 3 aborted for not reading, then 10 from minute 15 on.
            {
                "series": 'relay_sessions_total{project="acme", outcome="client_closed"}',
                "values": "0+100x30",
            },
            {
                "series": 'relay_client_aborts_total{reason="send_timeout"}',
                "values": "0+3x15 45+10x15",
            },
            {"series": 'relay_client_aborts_total{reason="close_timeout"}', "values": "0+50x30"},
        ],
        "alert_rule_test": [
            quiet("LiveRelayConnectionsRefused", "9m"),  # refused, but not for 10 minutes yet
            alert(
                "LiveRelayConnectionsRefused",
                "16m",
                {"severity": "warning", "reason": "request_timeout"},
                "more than one connection per second refused (request_timeout)",
            ),
            # 3 % (close_timeout is not counted: HTTP refusals linger too, not only sessions).
            quiet("LiveRelayClientsNotReading", "14m"),
            quiet("LiveRelayClientsNotReading", "24m"),  # 10 % but not for 10 minutes yet
            alert(
                "LiveRelayClientsNotReading",
                "29m",
                {"severity": "warning"},
                "10% of sessions aborted for not reading",
            ),
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # Within budget for 10 minutes, then two buffers dropped at minute 12.
            {
                "series": 'relay_replay_buffers_dropped_total{instance="relay:9100"}',
                "values": "0x11 2x20",
            },
        ],
        "alert_rule_test": [
            quiet("LiveRelayReplayBuffersDropped", "10m"),
            alert(
                "LiveRelayReplayBuffersDropped",
                "14m",
                {"severity": "warning", "instance": "relay:9100"},
                "relay:9100 dropped 2 replay buffers at its budget",
            ),
            quiet("LiveRelayReplayBuffersDropped", "31m"),  # none for over 10 minutes
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # Within budget for 10 minutes, then three connections shed at minute 12.
            {
                "series": 'relay_client_input_shed_total{instance="relay:9100"}',
                "values": "0x11 3x20",
            },
        ],
        "alert_rule_test": [
            quiet("LiveRelayClientInputShed", "10m"),
            alert(
                "LiveRelayClientInputShed",
                "14m",
                {"severity": "warning", "instance": "relay:9100"},
                "relay:9100 shed 3 client connections at its input budget",
            ),
            quiet("LiveRelayClientInputShed", "31m"),
        ],
    },
]


def test_replayed_series_fire_the_alerts_they_should(rules_file: Path) -> None:
    tests_file = rules_file.parent / "alerts-test.yml"
    tests_file.write_text(
        yaml.safe_dump(
            {"rule_files": [rules_file.name], "evaluation_interval": "1m", "tests": REPLAYS}
        )
    )
    result = subprocess.run(
        [promtool(), "test", "rules", tests_file.name],
        cwd=rules_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
