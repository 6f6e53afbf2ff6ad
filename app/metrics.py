"""Prometheus metrics of the relay, and the `/metrics` endpoint that exposes them.

Every metric lives on a `CollectorRegistry` handed to `RelayMetrics`, so each app (and each
test) owns its own; nothing is registered on prometheus_client's global registry.

Several uvicorn workers: prometheus_client's multiprocess mode. prometheus_client picks its value
store once, when it is first imported, from the `PROMETHEUS_MULTIPROC_DIR` environment variable;
there is no other switch. So the `serve` command calls `prepare_multiprocess` in the parent
process before uvicorn starts its workers: it sets that variable to a fresh directory, and every
worker, being a newly spawned interpreter that inherits the parent's environment, imports
prometheus_client already in multiprocess mode. Each worker then writes its values to files in
that directory, and `metrics_registry()` returns a registry that sums the files of all workers, so
whichever worker answers a scrape reports the totals. Open sessions of a worker that has exited
(crashed, or restarted by uvicorn) are dropped at the next scrape.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_asgi_app,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.metrics_core import Metric
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.settings import Settings
from app.web import bearer_matches, error_response

# The variable prometheus_client itself reads (see the module docstring).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Set it to false to get the `_created` series back (see `metrics_registry`).
CREATED_SERIES_ENV = "PROMETHEUS_DISABLE_CREATED_SERIES"

# Values of the `direction` label of relay_frames_total and relay_bytes_total.
FROM_CLIENT = "client_to_upstream"
TO_CLIENT = "upstream_to_client"

# Sessions last seconds to the 30-minute default limit (and beyond, when configured).
SESSION_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)
# A Vertex handshake (TCP + TLS + WebSocket upgrade) takes tens to hundreds of milliseconds.
UPSTREAM_CONNECT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A switch is a handshake plus a setup round trip: tens of milliseconds to seconds.
UPSTREAM_SWITCH_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30)

# Values of the `reason` label of relay_connections_refused_total and relay_client_aborts_total.
REFUSAL_REASONS = (
    "request_timeout",
    "uri_too_long",
    "headers_too_large",
    "bad_request",
    "pending_admissions",
)
CLIENT_ABORT_REASONS = ("send_timeout", "close_blocked", "close_timeout")

# Close codes a peer may legitimately send (RFC 6455 section 7.4.1 and the IANA registry).
# Codes 3000-4999 are free for applications: a client could send thousands of distinct ones,
# so they are counted by class to keep the `code` label bounded.
_STANDARD_CLOSE_CODES = frozenset(range(1000, 1016))


def close_code_label(code: int) -> str:
    """The `code` label for a WebSocket close code: itself when standard, else its class."""
    if code in _STANDARD_CLOSE_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "invalid"


class RelayMetrics:
    """All metrics of the relay, registered on one registry.

    Labels stay low-cardinality: `project` is bounded by the configuration, every `reason`,
    `outcome`, `kind` and `side` is a word chosen by the relay, never a user or session id.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sessions_active = Gauge(
            "relay_sessions_active",
            "Client sessions open now.",
            ["project"],
            registry=registry,
            # Sum over live workers only: a worker that exited holds no session.
            multiprocess_mode="livesum",
        )
        self.sessions_total = Counter(
            "relay_sessions_total",
            "Client sessions ended, by outcome: refused before relaying (setup_rejected, "
            "quota_refused, upstream_unavailable) or how an admitted one ended (client_closed, "
            "upstream_closed, upstream_lost, time_limit, idle, tokens, quota_lost, rate_limited, "
            "frame_too_big, message_refused, switch_failed, input_shed, drain, error).",
            ["project", "outcome"],
            registry=registry,
        )
        self.session_duration_seconds = Histogram(
            "relay_session_duration_seconds",
            "Length of client sessions that were admitted.",
            ["project"],
            registry=registry,
            buckets=SESSION_DURATION_BUCKETS,
        )
        self.frames_total = Counter(
            "relay_frames_total",
            "WebSocket frames relayed, by direction.",
            ["direction"],
            registry=registry,
        )
        self.bytes_total = Counter(
            "relay_bytes_total",
            "Payload bytes of relayed WebSocket frames, by direction.",
            ["direction"],
            registry=registry,
        )
        self.tokens_total = Counter(
            "relay_tokens_total",
            "Tokens reported by the upstream's usageMetadata, by kind (prompt, response).",
            ["project", "kind"],
            registry=registry,
        )
        self.quota_rejections_total = Counter(
            "relay_quota_rejections_total",
            "Sessions refused by a quota, by reason: the quota that refused them (sessions, "
            "user_sessions, tokens) or store (the quota store was unreachable).",
            ["project", "reason"],
            registry=registry,
        )
        self.fail_open_admissions_total = Counter(
            "relay_fail_open_admissions_total",
            "Sessions admitted without a quota check because the quota store was unreachable.",
            ["project"],
            registry=registry,
        )
        # Per-project usage against limits, as the quota store (shared by every replica) counts
        # it; refreshed every few seconds by app/quota/usage_export.py. Every worker reads the
        # same store: the most recent value is the answer, not a sum.
        self.quota_sessions_held = Gauge(
            "relay_quota_sessions_held",
            "Concurrent-session slots of the project held now, across all replicas.",
            ["project"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.quota_sessions_limit = Gauge(
            "relay_quota_sessions_limit",
            "The project's limit of concurrent sessions.",
            ["project"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.quota_window_tokens = Gauge(
            "relay_quota_window_tokens",
            "Tokens the project used in the sliding 60-second window, across all replicas.",
            ["project"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.quota_tokens_per_minute_limit = Gauge(
            "relay_quota_tokens_per_minute_limit",
            "The project's limit of tokens per sliding 60-second window.",
            ["project"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.auth_failures_total = Counter(
            "relay_auth_failures_total",
            "Client connections refused by authentication, by reason.",
            ["reason"],
            registry=registry,
        )
        self.connections_refused_total = Counter(
            "relay_connections_refused_total",
            "Client connections refused before a session began because they broke a resource "
            "bound, by reason: request_timeout (408), uri_too_long (414), headers_too_large "
            "(431), bad_request (400, not HTTP or not a WebSocket handshake), "
            "pending_admissions (429).",
            ["reason"],
            registry=registry,
        )
        self.client_aborts_total = Counter(
            "relay_client_aborts_total",
            "Client connections aborted without a clean close, by reason: send_timeout (the "
            "client stopped reading), close_blocked (not reading when the relay closed), "
            "close_timeout (the close did not finish in time).",
            ["reason"],
            registry=registry,
        )
        self.upstream_connect_seconds = Histogram(
            "relay_upstream_connect_seconds",
            "Time to open the upstream WebSocket (TCP, TLS and handshake).",
            registry=registry,
            buckets=UPSTREAM_CONNECT_BUCKETS,
        )
        self.upstream_early_connects_total = Counter(
            "relay_upstream_early_connects_total",
            "Upstream connections opened while the session's quota admission answered, by "
            "outcome: used, or unused (the session was refused or its client left; closed).",
            ["outcome"],
            registry=registry,
        )
        self.upstream_failures_total = Counter(
            "relay_upstream_failures_total",
            "Upstream connections that could not be opened, by cause (timeout, dns, refused, "
            "network, tls_certificate, tls, http_status, handshake, credentials, setup_timeout) "
            "and HTTP status (http_status only, else none).",
            ["cause", "status"],
            registry=registry,
        )
        self.closes_total = Counter(
            "relay_closes_total",
            "Sessions closed, by the side that closed first (client, upstream, relay) and code.",
            ["side", "code"],
            registry=registry,
        )
        self.sessions_shed_total = Counter(
            "relay_sessions_shed_total",
            "Live sessions ended at a turn boundary because their project's tokens-per-minute "
            'window was over budget, by reason: shed (the over_budget policy "shed" chose '
            'them) or end_all (the policy "end_all" ends every session).',
            ["reason"],
            registry=registry,
        )
        self.goaways_total = Counter(
            "relay_goaways_total",
            "goAway messages sent to clients, by reason: time_limit, drain, budget, tokens (over "
            "the tokens-per-minute budget), or upstream "
            "(the upstream's own, passed on).",
            ["reason"],
            registry=registry,
        )
        self.upstream_switches_total = Counter(
            "relay_upstream_switches_total",
            "Sessions moved to a new upstream connection (transparent resumption), by cause "
            "(goaway, closed, lost, error) and mode (make_before_break, break_before_make).",
            ["cause", "mode"],
            registry=registry,
        )
        self.upstream_switch_gap_seconds = Histogram(
            "relay_upstream_switch_gap_seconds",
            "Client-visible gap of a switch: from the old connection's last frame to the new "
            "connection being ready, the unconfirmed input replayed.",
            ["mode"],
            registry=registry,
            buckets=UPSTREAM_SWITCH_GAP_BUCKETS,
        )
        self.upstream_switch_failures_total = Counter(
            "relay_upstream_switch_failures_total",
            "Switches that failed and ended their session with 1011, by reason (refused, "
            "buffer_overflow, deadline, unavailable, unstable).",
            ["reason"],
            registry=registry,
        )
        self.upstream_switch_cut_turns_total = Counter(
            "relay_upstream_switch_cut_turns_total",
            "Switches forced while a reply was in flight: the client got interrupted, the rest "
            "of that reply was lost and the model answered again from the replayed input.",
            registry=registry,
        )
        self.replay_buffers_dropped_total = Counter(
            "relay_replay_buffers_dropped_total",
            "Sessions whose replay buffer was dropped at the process's replay budget "
            "(RELAY_RESUMPTION_BUFFER_BUDGET_BYTES): their next switch fails unless the "
            "upstream confirmed all their input first.",
            registry=registry,
        )
        self.replay_budget_bytes_held = Gauge(
            "relay_replay_budget_bytes_held",
            "Bytes of unconfirmed client input held by the replay buffers of all sessions, "
            "against the process's replay budget (refreshed every few seconds).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.client_input_shed_total = Counter(
            "relay_client_input_shed_total",
            "Client connections closed 1013 at the process's budget of client input held in "
            "memory (RELAY_CLIENT_INPUT_BUDGET_BYTES): those holding the most, first.",
            registry=registry,
        )
        self.client_input_bytes_held = Gauge(
            "relay_client_input_bytes_held",
            "Bytes of client input held before it can go upstream (frames still arriving, "
            "frames sent before setupComplete), against the process's input budget "
            "(refreshed every few seconds).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.build_info = Gauge(
            "relay_build_info",
            "Always 1; the labels say which live-relay and Python are running.",
            ["version", "python"],
            registry=registry,
            # Every worker reports the same 1; without a mode each would add a `pid` series.
            multiprocess_mode="max",
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)

        # Bound once: add_traffic runs for every session every few seconds and should not look
        # label values up each time.
        self._frames_in = self.frames_total.labels(direction=FROM_CLIENT)
        self._frames_out = self.frames_total.labels(direction=TO_CLIENT)
        self._bytes_in = self.bytes_total.labels(direction=FROM_CLIENT)
        self._bytes_out = self.bytes_total.labels(direction=TO_CLIENT)
        # Every reason shown from the start at 0, so that an alert on its rate has a series.
        for reason in REFUSAL_REASONS:
            self.connections_refused_total.labels(reason=reason)
        for reason in CLIENT_ABORT_REASONS:
            self.client_aborts_total.labels(reason=reason)

    def add_traffic(self, frames_in: int, bytes_in: int, frames_out: int, bytes_out: int) -> None:
        """Add one session's traffic since its last call; `in` is client -> upstream.

        The session pumps count frames and bytes in plain integers and call this with the
        deltas every few seconds and at session end, never per frame: the hot path only adds.
        """
        self._frames_in.inc(frames_in)
        self._bytes_in.inc(bytes_in)
        self._frames_out.inc(frames_out)
        self._bytes_out.inc(bytes_out)

    def record_upstream_failure(self, cause: str, status: int | None) -> None:
        """Count an upstream connection that could not be opened (see `FAILURE_CAUSES`)."""
        shown = str(status) if status is not None and 100 <= status <= 599 else "none"
        self.upstream_failures_total.labels(cause=cause, status=shown).inc()

    def record_close(self, side: str, code: int) -> None:
        """Count a session's close by the side that closed first (client, upstream, relay)."""
        self.closes_total.labels(side=side, code=close_code_label(code)).inc()

    def record_refusal(self, reason: str) -> None:
        """Count a connection refused for breaking a resource bound (see `REFUSAL_REASONS`)."""
        self.connections_refused_total.labels(reason=reason).inc()

    def record_client_abort(self, reason: str) -> None:
        """Count a client connection aborted (see `CLIENT_ABORT_REASONS`)."""
        self.client_aborts_total.labels(reason=reason).inc()


def prepare_multiprocess(settings: Settings) -> Path | None:
    """Make multiprocess metrics work for the workers about to start; return their directory.

    Call in the parent process before uvicorn spawns workers. When `PROMETHEUS_MULTIPROC_DIR`
    is already set (an operator's choice, e.g. a mounted volume), its files from an earlier
    run are deleted, since they would otherwise be added to this run's counters. Otherwise,
    with several workers, a fresh private directory is created, exported in that variable and
    removed when this process exits. One worker needs nothing: returns None.
    """
    configured = os.environ.get(MULTIPROC_DIR_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory
    if settings.workers == 1:
        return None
    directory = Path(tempfile.mkdtemp(prefix="live-relay-metrics-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    return directory


class _MultiProcessRegistry(CollectorRegistry):
    """A registry whose exposition is the sum of every worker's files.

    In multiprocess mode a metric's values live in the shared files, so the metric objects
    registered here (by `RelayMetrics`) are kept only for the duplicate-name check; collecting
    them as well would report this worker's share a second time.
    """

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._directory = Path(directory)
        # prometheus_client.multiprocess has no type hints, hence the ignores.
        self._files = prometheus_multiprocess.MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        _forget_exited_workers(self._directory)
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        return metrics


def _forget_exited_workers(directory: Path) -> None:
    """Drop the `live*` gauge files (relay_sessions_active) of workers that no longer run.

    A worker that crashed never decrements its open sessions, and uvicorn's supervisor, which
    restarts it, offers no hook to clean up after it. The workers share this host's process
    table, so whichever worker answers a scrape checks for them instead.
    """
    for path in directory.glob("gauge_live*.db"):
        pid = int(path.stem.rpartition("_")[2])
        if not _process_exists(pid):
            prometheus_multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def metrics_registry() -> CollectorRegistry:
    """A fresh registry to give `RelayMetrics` and to expose on /metrics.

    In multiprocess mode (see `prepare_multiprocess`) it reports the sum over all workers;
    otherwise it also carries the process and platform collectors, which multiprocess mode
    cannot aggregate.

    The `_created` series (one per counter and histogram child, doubling the text format's
    size for a timestamp nobody graphs) are off unless `PROMETHEUS_DISABLE_CREATED_SERIES`
    is set, to false to have them.
    """
    if CREATED_SERIES_ENV not in os.environ:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        return _MultiProcessRegistry(directory)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class _MetricsEndpoint:
    """The ASGI endpoint behind GET /metrics: an optional bearer-token check, then exposition."""

    def __init__(self, registry: CollectorRegistry, token: SecretStr | None) -> None:
        # prometheus_client negotiates the format (Prometheus text, OpenMetrics) and gzip.
        self._exposition: ASGIApp = make_asgi_app(registry)
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is not None and not bearer_matches(
            Headers(scope=scope).get("authorization"), self._token
        ):
            refusal = error_response(401, "send Authorization: Bearer <RELAY_METRICS_TOKEN>")
            await refusal(scope, receive, send)
            return
        await self._exposition(scope, receive, send)


def metrics_route(registry: CollectorRegistry, token: SecretStr | None) -> Route:
    """GET /metrics as a route to add to an existing app (`app.router.routes.append(...)`)."""
    return Route("/metrics", _MetricsEndpoint(registry, token), methods=["GET"])


def build_metrics_app(registry: CollectorRegistry, token: SecretStr | None) -> ASGIApp:
    """A standalone app serving only GET /metrics, e.g. on `RELAY_METRICS_PORT`.

    With `token` set, a request without `Authorization: Bearer <token>` gets 401 and a JSON body.
    """
    return Starlette(routes=[metrics_route(registry, token)])
