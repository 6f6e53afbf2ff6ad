"""docs/reliability.md states the limits the code enforces, and names only real settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.auth.token_api import MAX_SESSION_TOKEN_LENGTH
from app.bounded_json import MAX_JSON_DEPTH
from app.relay.admission.early_connect import QUIET_SECONDS
from app.relay.admission.pending import PENDING_WAIT_SECONDS
from app.relay.client import bounded_protocols as bounds
from app.relay.client.handshake_pacing import MAX_WAITING
from app.settings import Settings
from tests.reliability.conftest import soak_marks

pytestmark = soak_marks()

DOC = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text()


def row_of(name: str) -> str:
    rows = [line for line in DOC.splitlines() if line.startswith("|") and f"`{name}`" in line]
    assert len(rows) == 1, f"{name} should have exactly one row in the limits table"
    return rows[0]


def test_the_doc_names_only_settings_that_exist() -> None:
    named = set(re.findall(r"\bRELAY_[A-Z0-9_]+", DOC))  # not LIVE_RELAY_SOAK
    assert named - {f"RELAY_{name.upper()}" for name in Settings.model_fields} == set()


@pytest.mark.parametrize(
    ("name", "stated"),
    [
        ("MAX_REQUEST_LINE_BYTES", f"{bounds.MAX_REQUEST_LINE_BYTES // 1024} KiB"),
        ("MAX_HEADER_LINE_BYTES", f"{bounds.MAX_HEADER_LINE_BYTES // 1024} KiB"),
        ("MAX_HEADER_SECTION_BYTES", f"{bounds.MAX_HEADER_SECTION_BYTES // 1024} KiB"),
        ("MAX_HEADERS", f"| {bounds.MAX_HEADERS} |"),
        ("CLOSE_WRITE_GRACE_SECONDS", f"{bounds.CLOSE_WRITE_GRACE_SECONDS:g} s"),
        ("CLOSE_TIMEOUT_SECONDS", f"{bounds.CLOSE_TIMEOUT_SECONDS:g} s"),
        ("MAX_SESSION_TOKEN_LENGTH", f"{MAX_SESSION_TOKEN_LENGTH:,} characters"),
        ("PENDING_WAIT_SECONDS", f"{PENDING_WAIT_SECONDS:g} s"),
        ("app.bounded_json.MAX_JSON_DEPTH", f"{MAX_JSON_DEPTH} levels"),
        ("handshake_pacing.MAX_WAITING", f"{MAX_WAITING:,} waiting"),
        ("early_connect.QUIET_SECONDS", f"none for {QUIET_SECONDS:g} s"),
    ],
)
def test_the_limits_table_states_the_constants_the_code_uses(name: str, stated: str) -> None:
    assert stated in row_of(name)


@pytest.mark.parametrize(
    ("setting", "stated"),
    [
        ("request_timeout_seconds", "{:g} s"),
        ("client_send_timeout_seconds", "{:g} s"),
        ("max_pending_admissions_per_project", "{} per process"),
        ("max_pending_admissions_per_credential", "{} per process"),
        ("setup_timeout_seconds", "{:g} s"),
        ("handshake_concurrency", "{} per process"),
    ],
)
def test_the_limits_table_states_the_default_of_each_setting(setting: str, stated: str) -> None:
    default = Settings.model_fields[setting].default
    assert stated.format(default) in row_of(f"RELAY_{setting.upper()}")
