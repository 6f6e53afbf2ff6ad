"""A stand-in for one uvicorn worker: records one session into the multiprocess directory.

Run as `python -m tests.ops.metrics_writer PROJECT FRAMES` with PROMETHEUS_MULTIPROC_DIR set,
the way `prepare_multiprocess` leaves it for real workers. It prints `recorded`, then keeps
running, its session still open, until its standard input closes; it then exits without closing
the session, as a crashed worker would.
"""

from __future__ import annotations

import sys

from app.metrics import RelayMetrics, metrics_registry


def record_one_session(project: str, frames: int) -> None:
    metrics = RelayMetrics(metrics_registry())
    metrics.sessions_active.labels(project).inc()
    metrics.sessions_total.labels(project, "completed").inc()
    metrics.session_duration_seconds.labels(project).observe(12.0)
    metrics.add_traffic(frames, frames * 100, frames * 2, frames * 200)


if __name__ == "__main__":
    record_one_session(sys.argv[1], int(sys.argv[2]))
    print("recorded", flush=True)
    sys.stdin.read()
