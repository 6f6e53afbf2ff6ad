"""docker/kubernetes/: N replicas that drain before Kubernetes kills them, with valid settings."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth.keys import is_api_key
from app.startup import check_startup
from tests.ops.deployment_files import (
    ROOT,
    dockerfile_stages,
    image_environment,
    load_yaml_documents,
    settings_from_environment,
)
from tests.production.launch import DEPLOYED_SETTINGS

MANIFESTS = ROOT / "docker" / "kubernetes"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """Every object in the example, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in load_yaml_documents(path):
            assert document["kind"] not in found, f"second {document['kind']} in {path.name}"
            found[document["kind"]] = document
    return found


@pytest.fixture(scope="module")
def pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    [relay] = pod["containers"]
    assert isinstance(relay, dict)
    return relay


def container_environment(container: dict[str, Any], secret: dict[str, Any]) -> dict[str, str]:
    """The RELAY_* variables the pod gets, secret references read from the example Secret."""
    environment = image_environment()
    for variable in container["env"]:
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret["metadata"]["name"]
            environment[variable["name"]] = secret["stringData"][reference["key"]]
    return environment


def test_example_has_deployment_service_disruption_budget_and_secret(
    objects: dict[str, dict[str, Any]],
) -> None:
    assert set(objects) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Secret",
        "ServiceAccount",
    }


def test_pods_get_valid_settings(
    objects: dict[str, dict[str, Any]], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = container_environment(container, objects["Secret"])
    settings = settings_from_environment(monkeypatch, environment)
    check_startup(settings)  # what `live-relay serve` runs before it binds its port
    assert settings.upstream == "vertex"
    assert settings.host == "0.0.0.0"
    assert settings.redis_url is not None
    assert all(is_api_key(key.get_secret_value()) for key in settings.api_keys)


def test_pods_use_the_vertex_settings_the_metadata_server_tests_use(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    environment = container_environment(container, objects["Secret"])
    vertex = {name for name in environment if name.startswith("RELAY_VERTEX_")}
    assert vertex | {"RELAY_UPSTREAM"} == DEPLOYED_SETTINGS["metadata_server"]


def test_pods_get_vertex_tokens_through_workload_identity(
    objects: dict[str, dict[str, Any]], pod: dict[str, Any]
) -> None:
    account = objects["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    google_account = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert google_account.endswith(".iam.gserviceaccount.com")


@pytest.mark.parametrize("variable", ["RELAY_REDIS_URL", "RELAY_TOKEN_SIGNING_KEY"])
def test_secrets_come_from_the_secret_not_the_manifest(
    container: dict[str, Any], variable: str
) -> None:
    [entry] = [item for item in container["env"] if item["name"] == variable]
    assert "value" not in entry
    assert "secretKeyRef" in entry["valueFrom"]


def test_grace_period_outlasts_the_prestop_pause_and_the_drain(
    objects: dict[str, dict[str, Any]],
    pod: dict[str, Any],
    container: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from_environment(
        monkeypatch, container_environment(container, objects["Secret"])
    )
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pod["terminationGracePeriodSeconds"] > pause + settings.drain_seconds


def test_readiness_follows_readyz_and_liveness_healthz_on_the_relay_port(
    objects: dict[str, dict[str, Any]], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_environment(
        monkeypatch, container_environment(container, objects["Secret"])
    )
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert ports[readiness["port"]] == ports[liveness["port"]] == settings.port
    assert ports["metrics"] == settings.metrics_port


def test_several_replicas_roll_out_without_losing_capacity(
    objects: dict[str, dict[str, Any]],
) -> None:
    spec = objects["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["maxUnavailable"] < spec["replicas"]


def test_service_and_budget_select_the_deployments_pods(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert (
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
    port_names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["ports"]} == {"http"} <= port_names


def test_pods_run_as_the_images_non_root_user(pod: dict[str, Any]) -> None:
    [user] = [i.arguments for i in dockerfile_stages()[-1] if i.keyword == "USER"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == user.split(":")[0]
