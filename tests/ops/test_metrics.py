"""RelayMetrics on a fresh registry, and GET /metrics served by a real uvicorn."""

from __future__ import annotations

import platform

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from app import __version__
from app.metrics import (
    CLIENT_ABORT_REASONS,
    FROM_CLIENT,
    REFUSAL_REASONS,
    TO_CLIENT,
    RelayMetrics,
    build_metrics_app,
    close_code_label,
    metrics_registry,
    metrics_route,
)
from tests.ops.asgi_server import serving

# The metrics issue 6 asks for (plus fail-open admissions), with their Prometheus types.
EXPECTED_METRICS = {
    "relay_sessions_active": "gauge",
    "relay_sessions": "counter",
    "relay_session_duration_seconds": "histogram",
    "relay_frames": "counter",
    "relay_bytes": "counter",
    "relay_tokens": "counter",
    "relay_quota_rejections": "counter",
    "relay_fail_open_admissions": "counter",
    "relay_quota_sessions_held": "gauge",
    "relay_quota_sessions_limit": "gauge",
    "relay_quota_window_tokens": "gauge",
    "relay_quota_tokens_per_minute_limit": "gauge",
    "relay_auth_failures": "counter",
    "relay_connections_refused": "counter",  # issue 13's bounds: refusals and aborts
    "relay_client_aborts": "counter",
    "relay_upstream_connect_seconds": "histogram",
    "relay_upstream_early_connects": "counter",  # issue 15: opened while the quota answered
    "relay_upstream_failures": "counter",  # issue 10: why upstream connections failed
    "relay_closes": "counter",
    "relay_goaways": "counter",
    "relay_sessions_shed": "counter",
    "relay_upstream_switches": "counter",
    "relay_upstream_switch_gap_seconds": "histogram",
    "relay_upstream_switch_failures": "counter",
    "relay_upstream_switch_cut_turns": "counter",
    "relay_replay_buffers_dropped": "counter",
    "relay_replay_budget_bytes_held": "gauge",
    "relay_client_input_shed": "counter",
    "relay_client_input_bytes_held": "gauge",
    "relay_build_info": "gauge",
}

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def registry() -> CollectorRegistry:
    return metrics_registry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> RelayMetrics:
    return RelayMetrics(registry)


def test_every_metric_of_the_issue_is_registered_with_its_type(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    relay_metrics = {m.name: m.type for m in registry.collect() if m.name.startswith("relay_")}
    assert relay_metrics == EXPECTED_METRICS


def test_each_registry_gets_its_own_metrics_so_apps_do_not_clash() -> None:
    first, second = metrics_registry(), metrics_registry()
    RelayMetrics(first).sessions_total.labels("p", "completed").inc()
    RelayMetrics(second)
    sample = {"project": "p", "outcome": "completed"}
    assert first.get_sample_value("relay_sessions_total", sample) == 1
    assert second.get_sample_value("relay_sessions_total", sample) is None


def test_add_traffic_adds_deltas_to_each_direction(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    metrics.add_traffic(frames_in=3, bytes_in=300, frames_out=5, bytes_out=5000)
    metrics.add_traffic(frames_in=1, bytes_in=20, frames_out=0, bytes_out=0)

    def value(name: str, direction: str) -> float | None:
        return registry.get_sample_value(name, {"direction": direction})

    assert value("relay_frames_total", FROM_CLIENT) == 4
    assert value("relay_bytes_total", FROM_CLIENT) == 320
    assert value("relay_frames_total", TO_CLIENT) == 5
    assert value("relay_bytes_total", TO_CLIENT) == 5000


def test_traffic_series_exist_at_zero_before_any_session(registry: CollectorRegistry) -> None:
    RelayMetrics(registry)
    for direction in (FROM_CLIENT, TO_CLIENT):
        assert registry.get_sample_value("relay_frames_total", {"direction": direction}) == 0


def test_every_refusal_and_abort_reason_exists_at_zero_before_any(
    registry: CollectorRegistry,
) -> None:
    RelayMetrics(registry)
    for reason in REFUSAL_REASONS:
        assert registry.get_sample_value("relay_connections_refused_total", {"reason": reason}) == 0
    for reason in CLIENT_ABORT_REASONS:
        assert registry.get_sample_value("relay_client_aborts_total", {"reason": reason}) == 0


def test_build_info_is_one_labelled_with_version_and_python(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    labels = {"version": __version__, "python": platform.python_version()}
    assert registry.get_sample_value("relay_build_info", labels) == 1


@pytest.mark.parametrize(
    ("code", "label"),
    [
        (1000, "1000"),
        (1008, "1008"),
        (1011, "1011"),
        (3001, "3xxx"),
        (4321, "4xxx"),
        (5000, "invalid"),
        (999, "invalid"),
    ],
)
def test_close_codes_are_kept_when_standard_and_grouped_by_class_otherwise(
    code: int, label: str
) -> None:
    assert close_code_label(code) == label


def test_record_close_counts_by_side_and_bounded_code(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    for code in (4001, 4002, 4999):  # a client choosing many private codes
        metrics.record_close("client", code)
    metrics.record_close("upstream", 1011)
    assert registry.get_sample_value("relay_closes_total", {"side": "client", "code": "4xxx"}) == 3
    assert (
        registry.get_sample_value("relay_closes_total", {"side": "upstream", "code": "1011"}) == 1
    )


def test_sessions_active_follows_opens_and_closes_per_project(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    metrics.sessions_active.labels("a").inc()
    metrics.sessions_active.labels("a").inc()
    metrics.sessions_active.labels("b").inc()
    metrics.sessions_active.labels("a").dec()
    assert registry.get_sample_value("relay_sessions_active", {"project": "a"}) == 1
    assert registry.get_sample_value("relay_sessions_active", {"project": "b"}) == 1


def test_single_process_registry_also_reports_the_process(registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("process_resident_memory_bytes") is not None


async def test_metrics_endpoint_without_token_serves_prometheus_text(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    metrics.tokens_total.labels("demo", "prompt").inc(162)
    async with serving(build_metrics_app(registry, None)) as port, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'relay_tokens_total{kind="prompt",project="demo"} 162.0' in response.text
    assert "relay_build_info{" in response.text


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
    ids=["missing", "wrong-token", "wrong-scheme", "empty", "longer-token"],
)
async def test_metrics_endpoint_with_token_refuses_other_requests_with_401_json(
    registry: CollectorRegistry, metrics: RelayMetrics, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    app = build_metrics_app(registry, SecretStr(TOKEN))
    async with serving(app) as port, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert "relay_" not in response.text


async def test_metrics_endpoint_with_token_serves_the_bearer_of_that_token(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    app = build_metrics_app(registry, SecretStr(TOKEN))
    async with serving(app) as port, httpx.AsyncClient() as client:
        response = await client.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"bearer {TOKEN}"}
        )
    assert response.status_code == 200
    assert "relay_build_info{" in response.text


async def test_standalone_metrics_app_serves_only_get_metrics(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    async with serving(build_metrics_app(registry, None)) as port, httpx.AsyncClient() as client:
        other_path = await client.get(f"http://127.0.0.1:{port}/")
        post = await client.post(f"http://127.0.0.1:{port}/metrics")
    assert other_path.status_code == 404
    assert post.status_code == 405


async def test_metrics_route_in_an_existing_app_answers_at_metrics_without_redirect(
    registry: CollectorRegistry, metrics: RelayMetrics
) -> None:
    app = FastAPI()
    app.router.routes.append(metrics_route(registry, None))
    async with serving(app) as port, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert "relay_build_info{" in response.text
