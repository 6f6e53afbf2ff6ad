"""Several worker processes, one multiprocess directory: scrapes report the sums."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.metrics import (
    FROM_CLIENT,
    MULTIPROC_DIR_ENV,
    RelayMetrics,
    build_metrics_app,
    metrics_registry,
    prepare_multiprocess,
)
from app.settings import Settings
from tests.ops.asgi_server import serving

ROOT = Path(__file__).resolve().parents[2]
DEMO = {"project": "demo"}
COMPLETED = DEMO | {"outcome": "completed"}


@pytest.fixture
def without_multiproc_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """PROMETHEUS_MULTIPROC_DIR unset now, and restored as it was after the test."""
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "recorded-so-the-original-is-restored")
    monkeypatch.delenv(MULTIPROC_DIR_ENV)


@pytest.fixture
def two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[subprocess.Popen[str]]]:
    """Two running processes that each recorded one open session (3 and 4 frames) in one
    directory, which this test process then reads as the exposing worker would."""
    env = {**os.environ, MULTIPROC_DIR_ENV: str(tmp_path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ops.metrics_writer", "demo", str(frames)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for frames in (3, 4)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "recorded\n"
        monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
        yield workers
    finally:
        for worker in workers:
            stop(worker)


def stop(worker: subprocess.Popen[str]) -> None:
    """End a worker the way a crash would: its open session is never closed."""
    if worker.poll() is None:
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait(timeout=30)
    assert worker.stdout is not None
    worker.stdout.close()


def settings(workers: int) -> Settings:
    return Settings(_env_file=None, workers=workers)  # type: ignore[call-arg]


def test_one_worker_needs_no_multiprocess_directory(without_multiproc_dir: None) -> None:
    assert prepare_multiprocess(settings(workers=1)) is None
    assert MULTIPROC_DIR_ENV not in os.environ


def test_several_workers_get_a_fresh_directory_exported_to_them(
    without_multiproc_dir: None,
) -> None:
    directory = prepare_multiprocess(settings(workers=2))
    try:
        assert directory is not None
        assert directory.is_dir()
        assert list(directory.iterdir()) == []
        assert os.environ[MULTIPROC_DIR_ENV] == str(directory)
    finally:
        if directory is not None:
            shutil.rmtree(directory)


def test_an_operator_chosen_directory_is_emptied_of_an_earlier_runs_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_1234.db").write_bytes(b"stale")
    (tmp_path / "gauge_livesum_1234.db").write_bytes(b"stale")
    (tmp_path / "README").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    assert prepare_multiprocess(settings(workers=2)) == tmp_path
    assert sorted(path.name for path in tmp_path.iterdir()) == ["README"]


def test_values_of_all_workers_are_summed(two_workers: list[subprocess.Popen[str]]) -> None:
    registry = metrics_registry()
    assert registry.get_sample_value("relay_sessions_total", COMPLETED) == 2
    assert registry.get_sample_value("relay_frames_total", {"direction": FROM_CLIENT}) == 7
    assert registry.get_sample_value("relay_bytes_total", {"direction": FROM_CLIENT}) == 700
    assert registry.get_sample_value("relay_session_duration_seconds_count", DEMO) == 2
    assert registry.get_sample_value("relay_sessions_active", DEMO) == 2


def test_an_exited_workers_open_sessions_stop_counting_at_the_next_scrape(
    two_workers: list[subprocess.Popen[str]],
) -> None:
    registry = metrics_registry()
    assert registry.get_sample_value("relay_sessions_active", DEMO) == 2
    stop(two_workers[0])
    assert registry.get_sample_value("relay_sessions_active", DEMO) == 1
    # Counters keep what the exited worker counted: totals never go back.
    assert registry.get_sample_value("relay_sessions_total", COMPLETED) == 2


async def test_a_scrape_shows_each_series_once_with_the_sums(
    two_workers: list[subprocess.Popen[str]],
) -> None:
    registry = metrics_registry()
    RelayMetrics(registry)  # as in a worker: its own metrics live on the registry it exposes
    async with serving(build_metrics_app(registry, None)) as port, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    samples = [line for line in response.text.splitlines() if line.startswith("relay_")]
    names_and_labels = [re.sub(r" \S+$", "", line) for line in samples]
    assert len(names_and_labels) == len(set(names_and_labels))
    assert 'relay_sessions_total{outcome="completed",project="demo"} 2.0' in samples
    assert 'relay_sessions_active{project="demo"} 2.0' in samples
    # One build_info series for the whole relay, not one per worker process.
    assert len([line for line in samples if line.startswith("relay_build_info")]) == 1
    assert "pid=" not in response.text
