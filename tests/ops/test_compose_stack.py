"""`docker compose up` answers as the docs say, proven without a container engine: the image is
laid out by carrying out the Dockerfile (tests/ops/local_image.py), then every default service
of docker-compose.yml, and Prometheus of the monitoring profile, runs as a local process with
its compose environment inside a private network namespace where the service names resolve to
loopback (tests/ops/compose_stack.py). A text turn with the compose file's key goes through the
relay and the emulator with its quota lease in Redis; the image's HEALTHCHECK passes; Prometheus
scrapes the relay with docker/prometheus.yml.

Not covered: Grafana (no Debian package; its datasource and dashboard are checked statically in
test_compose.py), the base images' own binaries (Debian's redis-server and Prometheus stand in
for the redis and prom/prometheus images), and the image's non-root user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.ops.deployment_files import ROOT, load_yaml
from tests.ops.local_image import build
from tests.ops.postgres_service import server_binaries_present

pytestmark = pytest.mark.slow

PROMETHEUS_UNPACKED = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "prometheus"
NAMESPACE = ["unshare", "--net", "--mount"] + ([] if os.getuid() == 0 else ["--map-root-user"])


def prometheus_binary() -> str | None:
    """Debian's Prometheus: unpacked by `make test` into .cache/, or installed."""
    if PROMETHEUS_UNPACKED.exists():
        return str(PROMETHEUS_UNPACKED)
    return shutil.which("prometheus")


def namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    result = subprocess.run([*NAMESPACE, "true"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not namespaces_available():
        pytest.skip("private network namespaces are not available here (unshare --net --mount)")
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server is missing (`make test` installs it)")
    if not server_binaries_present() or os.getuid() != 0:
        # The compose stack's usage ledger runs the host's PostgreSQL as its `postgres` user.
        pytest.skip("PostgreSQL's server binaries, and root to run them as postgres, are needed")
    image = build(tmp_path_factory.mktemp("image"))
    image_file = tmp_path_factory.mktemp("spec") / "image.json"
    image_file.write_text(image.to_json())
    workdir = tmp_path_factory.mktemp("stack")
    command = [sys.executable, "-m", "tests.ops.compose_stack", str(image_file), str(workdir)]
    result = subprocess.run(
        [*NAMESPACE, *command, prometheus_binary() or ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')}" for p in workdir.glob("*.log")
    )
    assert result.returncode == 0, result.stderr + logs
    parsed: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return parsed


def compose_key() -> str:
    key: str = load_yaml(ROOT / "docker-compose.yml")["services"]["relay"]["environment"][
        "RELAY_API_KEYS"
    ]
    return key


def test_a_text_turn_with_the_compose_key_goes_through_relay_and_emulator(
    report: dict[str, Any],
) -> None:
    turn = report["turn"]
    assert turn["setup_complete"]
    assert turn["reply"].startswith('Reply 1: you said "Hello from compose".')
    assert compose_key().startswith("lr_dev_")


def test_the_session_holds_its_quota_lease_in_redis_and_charges_tokens_there(
    report: dict[str, Any],
) -> None:
    turn = report["turn"]
    assert turn["leases_during_session"] == 1
    assert turn["leases_after_session"] == 0
    # What stays: the token window and the release mark, which lives one lease TTL so that a late
    # admission of the same session cannot re-create its lease (docs/quota-guarantees.md).
    # The session's spend in the window (the "shed" policy) stays as long as its tokens do.
    assert turn["keys_after_session"] == [
        "relay:{default}:released",
        "relay:{default}:spend",
        "relay:{default}:spend_index",
        "relay:{default}:spend_log",
        "relay:{default}:tokens",
    ]


def test_the_session_leaves_its_usage_record_in_the_stacks_postgres(
    report: dict[str, Any],
) -> None:
    [record] = report["turn"]["ledger"]
    assert record["final"]
    assert record["project"] == "default"
    assert record["usage_reports"] == 1
    assert record["total_tokens"] > 0


def test_the_images_healthcheck_passes(report: dict[str, Any]) -> None:
    assert report["relay_healthcheck"] == 0
    assert report["healthcheck_argv"][-1].endswith("/opt/live-relay/healthcheck.py")


def test_every_service_is_still_running(report: dict[str, Any]) -> None:
    assert set(report["running"]) >= {"relay", "emulator", "redis", "postgres"}
    assert all(report["running"].values()), report["running"]


def test_the_target_prometheus_is_configured_with_serves_the_relays_metrics(
    report: dict[str, Any],
) -> None:
    scrape = report["config_target_scrape"]
    assert scrape == {
        "url": "http://relay:9100/metrics",
        "status": 200,
        "has_relay_build_info": True,
    }


def test_prometheus_scrapes_the_relay_with_the_monitoring_config(report: dict[str, Any]) -> None:
    if "prometheus" not in report:
        pytest.skip("no Prometheus binary (`make test` unpacks Debian's into .cache/)")
    view = report["prometheus"]
    assert view["targets"] == [
        {"url": "http://relay:9100/metrics", "health": "up", "job": "live-relay"}
    ]
    assert view["relay_build_info_series"] == 1
