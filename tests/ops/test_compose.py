"""docker-compose.yml (and its Vertex override) against the compose specification, and the
settings and wiring they give the relay. There is no Docker engine here: the file is checked
against the compose-spec JSON schema, which check-jsonschema ships; test_compose_stack.py runs
the stack itself as local processes."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest

from app.auth.keys import is_api_key
from app.cli import build_parser
from app.metrics import RelayMetrics, metrics_registry
from app.startup import check_startup
from tests.ops.deployment_files import (
    ROOT,
    duration_seconds,
    image_environment,
    interpolate,
    load_yaml,
    settings_from_environment,
)
from tests.production.launch import DEPLOYED_SETTINGS
from tests.support.token_server import write_authorized_user

COMPOSE = ROOT / "docker-compose.yml"
VERTEX_OVERRIDE = ROOT / "docker" / "compose.vertex.yml"
DEFAULT_SERVICES = {"relay", "redis", "postgres", "emulator"}


def compose_schema_validator() -> jsonschema.protocols.Validator:
    schemas = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((schemas / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    return compose_schema_validator()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def relay_environment(compose: dict[str, Any]) -> dict[str, str]:
    """What the relay container gets: the image's ENV, then compose's `environment`."""
    declared = compose["services"]["relay"]["environment"]
    return image_environment() | {name: str(value) for name, value in declared.items()}


def errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("path", [COMPOSE, VERTEX_OVERRIDE], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(
    validator: jsonschema.protocols.Validator, path: Path
) -> None:
    assert errors(validator, load_yaml(path)) == []


def test_the_schema_check_catches_a_wrong_compose_file(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["relay"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["relay"]["restart_policy"] = "always"
    assert len(errors(validator, broken)) >= 2


def test_default_stack_is_relay_redis_and_emulator(compose: dict[str, Any]) -> None:
    default = {name for name, service in compose["services"].items() if "profiles" not in service}
    assert default == DEFAULT_SERVICES


def test_relay_gets_valid_settings_using_the_emulator_and_redis_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_environment(monkeypatch, relay_environment(compose))
    services = compose["services"]
    assert settings.upstream == "emulator"
    assert settings.host == "0.0.0.0"
    assert settings.api_keys, "a dev key, so a client can connect right away"
    assert all(is_api_key(key.get_secret_value()) for key in settings.api_keys)

    assert settings.emulator_url is not None
    emulator_url = urlparse(settings.emulator_url)
    command = services["emulator"]["command"]
    assert emulator_url.hostname == "emulator"
    assert str(emulator_url.port) == command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"

    assert settings.redis_url is not None
    assert urlparse(settings.redis_url).hostname in services

    # The usage ledger is the compose stack's PostgreSQL, with the credentials it is given.
    assert settings.ledger_url is not None
    ledger = urlparse(settings.ledger_url)
    database = services["postgres"]["environment"]
    assert ledger.hostname == "postgres"
    assert (ledger.username, ledger.password) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
    )
    assert ledger.path == "/" + database["POSTGRES_DB"]

    published = [str(port).split(":")[-1] for port in services["relay"]["ports"]]
    assert str(settings.port) in published


def test_relay_has_time_to_drain_before_compose_kills_it(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_environment(monkeypatch, relay_environment(compose))
    grace = duration_seconds(compose["services"]["relay"]["stop_grace_period"])
    assert grace > settings.drain_seconds


def test_every_awaited_health_state_has_a_healthcheck(compose: dict[str, Any]) -> None:
    dockerfile_has_healthcheck = "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()
    services = compose["services"]
    awaited = [
        (name, dependency)
        for name, service in services.items()
        for dependency, rule in service.get("depends_on", {}).items()
        if rule["condition"] == "service_healthy"
    ]
    assert ("relay", "redis") in awaited
    assert ("relay", "emulator") in awaited
    for _, dependency in awaited:
        target = services[dependency]
        # A service built from our Dockerfile inherits its HEALTHCHECK.
        assert "healthcheck" in target or ("build" in target and dockerfile_has_healthcheck)


@pytest.mark.parametrize("service", ["relay", "emulator"])
def test_service_commands_are_valid_live_relay_commands(
    compose: dict[str, Any], service: str
) -> None:
    # The image's ENTRYPOINT is `live-relay`; a service's `command` replaces its CMD `serve`.
    argv = [str(arg) for arg in compose["services"][service].get("command", ["serve"])]
    parser, chosen = build_parser(argv)
    assert chosen is not None
    parser.parse_args(argv)  # exits on an unknown command or option


def test_emulator_healthcheck_probes_the_port_it_listens_on(compose: dict[str, Any]) -> None:
    emulator = compose["services"]["emulator"]
    port = emulator["command"][emulator["command"].index("--port") + 1]
    assert f", {port})" in " ".join(emulator["healthcheck"]["test"])


def test_vertex_override_gives_valid_vertex_settings_with_the_mounted_credentials(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    override = interpolate(load_yaml(VERTEX_OVERRIDE), {"GOOGLE_CLOUD_PROJECT": "my-project"})
    relay_override = override["services"]["relay"]
    environment = relay_environment(compose) | relay_override["environment"]
    settings = settings_from_environment(monkeypatch, environment)
    assert settings.upstream == "vertex"
    assert settings.vertex_project == "my-project"
    assert settings.vertex_location == "us-central1"
    mounts = [volume.split(":") for volume in relay_override["volumes"]]
    [(source, target, mode)] = mounts
    assert source.endswith("application_default_credentials.json")
    assert mode == "ro"
    assert str(settings.vertex_credentials_file) == target
    # Start-up checks as in the container, the mount played by a gcloud ADC file here.
    adc_file = write_authorized_user(tmp_path / "application_default_credentials.json")
    check_startup(settings.model_copy(update={"vertex_credentials_file": adc_file}))


def test_vertex_override_uses_the_vertex_settings_the_credential_file_tests_use(
    compose: dict[str, Any],
) -> None:
    override = interpolate(load_yaml(VERTEX_OVERRIDE), {"GOOGLE_CLOUD_PROJECT": "my-project"})
    environment = relay_environment(compose) | override["services"]["relay"]["environment"]
    vertex = {name for name in environment if name.startswith("RELAY_VERTEX_")}
    # A gcloud ADC file (authorized_user) by default, a service-account key via GOOGLE_ADC_FILE.
    assert vertex | {"RELAY_UPSTREAM"} == DEPLOYED_SETTINGS["authorized_user"]
    assert vertex | {"RELAY_UPSTREAM"} == DEPLOYED_SETTINGS["service_account"]


def test_vertex_override_requires_the_google_cloud_project() -> None:
    with pytest.raises(KeyError, match="GOOGLE_CLOUD_PROJECT"):
        interpolate(load_yaml(VERTEX_OVERRIDE), {})


def test_monitoring_profile_adds_prometheus_and_grafana_only(compose: dict[str, Any]) -> None:
    profiled = {
        name: service["profiles"]
        for name, service in compose["services"].items()
        if "profiles" in service
    }
    assert profiled == {"prometheus": ["monitoring"], "grafana": ["monitoring"]}


def test_prometheus_scrapes_the_relays_metrics_endpoint(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_environment(monkeypatch, relay_environment(compose))
    config = load_yaml(ROOT / "docker" / "prometheus.yml")
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    [target] = [t for group in job["static_configs"] for t in group["targets"]]
    assert not settings.metrics_on_client_port  # metrics stay off the port clients reach
    assert target == f"relay:{settings.metrics_port}"
    assert settings.metrics_enabled
    assert settings.metrics_token is None, "the scrape config sends no token"
    mounted = compose["services"]["prometheus"]["volumes"]
    assert "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounted


def test_grafana_reads_the_prometheus_service() -> None:
    datasources = load_yaml(ROOT / "docker/grafana/provisioning/datasources/prometheus.yml")
    [source] = datasources["datasources"]
    assert urlparse(source["url"]).hostname == "prometheus"


# The series names Prometheus stores for each metric type.
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def test_dashboard_shows_every_relay_metric_and_only_real_ones() -> None:
    registry = metrics_registry()
    RelayMetrics(registry)
    series_of = {
        m.name: {m.name + suffix for suffix in SERIES_SUFFIXES[m.type]}
        for m in registry.collect()
        if m.name.startswith("relay_")
    }
    dashboard = json.loads((ROOT / "docker/grafana/dashboards/live-relay.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"\brelay_\w+", " ".join(expressions)))
    exported = set().union(*series_of.values())
    assert used <= exported, f"not exported by RelayMetrics: {used - exported}"
    unshown = {family for family, series in series_of.items() if not series & used}
    assert unshown == set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
