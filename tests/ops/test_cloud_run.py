"""docker/cloudrun/service.yaml: a Cloud Run service whose settings the relay accepts at start-up,
with the Vertex settings the metadata-server production tests use and timings that keep
sessions alive."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import Settings
from app.startup import check_startup
from tests.ops.deployment_files import (
    ROOT,
    image_environment,
    load_yaml,
    settings_from_environment,
)
from tests.production.launch import DEPLOYED_SETTINGS

SERVICE = ROOT / "docker" / "cloudrun" / "service.yaml"
CLOUD_RUN_SIGTERM_GRACE_SECONDS = 10
# What the operator puts in Secret Manager (the example only names the secrets).
SECRET_VALUES = {
    "live-relay-redis-url": "redis://10.0.0.3:6379/0",
    "live-relay-token-signing-key": "Zm9yLXRlc3RzLW9ubHktNDgtcmFuZG9tLWJ5dGVzLWZyb20tb3BlbnNzbA==",
    "live-relay-api-keys": "lr_" + "k" * 40,
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    service = load_yaml(SERVICE)
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    spec: dict[str, Any] = service["spec"]["template"]
    return spec


@pytest.fixture(scope="module")
def container(template: dict[str, Any]) -> dict[str, Any]:
    [relay] = template["spec"]["containers"]
    assert isinstance(relay, dict)
    return relay


@pytest.fixture
def settings(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    environment = image_environment()
    for variable in container["env"]:
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
        else:
            environment[variable["name"]] = SECRET_VALUES[
                variable["valueFrom"]["secretKeyRef"]["name"]
            ]
    return settings_from_environment(monkeypatch, environment)


def test_the_service_gets_settings_the_relay_accepts_at_start_up(settings: Settings) -> None:
    check_startup(settings)
    assert settings.upstream == "vertex"
    assert settings.vertex_credentials_file is None  # the metadata server, no key file


def test_the_service_uses_the_vertex_settings_the_metadata_server_tests_use(
    container: dict[str, Any],
) -> None:
    names = {variable["name"] for variable in container["env"]}
    vertex = {name for name in names if name.startswith("RELAY_VERTEX_")}
    assert vertex | {"RELAY_UPSTREAM"} == DEPLOYED_SETTINGS["metadata_server"]


def test_secrets_come_from_secret_manager(container: dict[str, Any]) -> None:
    by_name = {variable["name"]: variable for variable in container["env"]}
    for name in ("RELAY_REDIS_URL", "RELAY_TOKEN_SIGNING_KEY", "RELAY_API_KEYS"):
        assert "value" not in by_name[name]
        assert by_name[name]["valueFrom"]["secretKeyRef"]["key"] == "latest"


def test_sessions_outlive_nothing_cloud_run_enforces(
    template: dict[str, Any], settings: Settings
) -> None:
    assert template["spec"]["timeoutSeconds"] > settings.max_session_seconds
    assert settings.drain_seconds < CLOUD_RUN_SIGTERM_GRACE_SECONDS
    # Background lease renewals need CPU between requests.
    assert template["metadata"]["annotations"]["run.googleapis.com/cpu-throttling"] == "false"


def test_the_port_and_probes_are_the_relays(container: dict[str, Any], settings: Settings) -> None:
    [port] = container["ports"]
    assert port["name"] == "http1"  # WebSocket upgrades need HTTP/1.1
    assert port["containerPort"] == settings.port
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": settings.port}


def test_the_service_runs_as_its_own_service_account(template: dict[str, Any]) -> None:
    assert template["spec"]["serviceAccountName"].endswith(".iam.gserviceaccount.com")
