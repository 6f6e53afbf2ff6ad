"""The configuration examples a reader copies from docs/ are accepted by the code that reads
them: the projects file (with a key hash from `live-relay keys create` in place of the
shortened one), the quota table, `keys create`'s own output, and the Prometheus scrape job for a
token-protected relay."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth.projects import load_projects
from app.settings import Settings
from tests.docs.markdown import DOCS, block_containing
from tests.ops.deployment_files import ROOT

AUTHENTICATION = DOCS / "authentication.md"
PROMTOOL_UNPACKED = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool"


def keys_create(project: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app", "keys", "create", "--project", project],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_keys_create_prints_what_the_docs_show() -> None:
    shown = block_containing(AUTHENTICATION, "", "$ live-relay keys create").text.splitlines()
    command, *expected = shown
    assert command == "$ live-relay keys create --project acme"
    printed = keys_create("acme").rstrip("\n").splitlines()
    assert len(printed) == len(expected)
    for line, documented in zip(printed, expected, strict=True):
        # "Zq3…" in the docs is an example of the random key or its hash: any characters.
        pattern = ".+".join(re.escape(part) for part in re.split(r"[0-9A-Za-z]*…", documented))
        assert re.fullmatch(pattern, line), (documented, line)


def test_the_projects_file_example_loads(tmp_path: Path) -> None:
    example = block_containing(AUTHENTICATION, "toml", "[projects.acme]").text
    key_hash = re.search(r'"(sha256:[0-9a-f]{64})"', keys_create("acme"))[1]  # type: ignore[index]
    filled = example.replace('"sha256:9f2c…"', f'"{key_hash}"').replace(
        'secret = "…"', f'secret = "{"s" * 48}"'
    )
    unfilled = re.findall(r'"[^"\n]*…[^"\n]*"', filled)
    assert unfilled == [], "placeholders this test does not know how to fill"
    path = tmp_path / "projects.toml"
    path.write_text(filled)
    [acme] = load_projects(path, settings())
    assert acme.name == "acme"
    assert acme.quota.max_sessions == 50
    assert acme.quota.max_sessions_per_user == 2
    assert len(acme.issuers) == 2


def test_the_quota_example_loads(tmp_path: Path) -> None:
    example = block_containing(DOCS / "quotas.md", "toml", "[projects.acme.quota]").text
    path = tmp_path / "projects.toml"
    path.write_text("[projects.acme]\n" + example)
    [acme] = load_projects(path, settings())
    assert (acme.quota.max_sessions, acme.quota.tokens_per_minute) == (50, 10_000_000)


def test_the_token_protected_scrape_job_is_valid_prometheus_config(tmp_path: Path) -> None:
    promtool = str(PROMTOOL_UNPACKED) if PROMTOOL_UNPACKED.exists() else shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (`make test` unpacks Debian's Prometheus into .cache/)")
    job = block_containing(DOCS / "operations.md", "yaml", "credentials_file:").text
    token_file = tmp_path / "relay-metrics-token"
    token_file.write_text("a-metrics-token\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(job.replace("/etc/prometheus/relay-metrics-token", str(token_file)))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
