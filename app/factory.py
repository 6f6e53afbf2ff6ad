"""`create_app(settings)`: the relay as an ASGI app. Nothing is built at import time.

The lifespan opens what the process shares (upstream connector, quota store, authenticator,
metrics) and closes it in reverse order. Handlers reach it through `app.state.relay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app import __version__
from app.auth.authenticator import Authenticator
from app.auth.projects import ProjectRegistry
from app.auth.token_api import build_token_router
from app.auth.token_cors import TokenCors
from app.browser import assets
from app.emulator import Emulator, EmulatorConfig
from app.ledger import routes as ledger_routes
from app.ledger.budgets import Budgets
from app.ledger.metrics import LedgerMetrics
from app.ledger.setup import open_ledger
from app.metrics import RelayMetrics, metrics_registry, metrics_route
from app.quota.keeper import QuotaKeeper
from app.quota.store import open_quota_store
from app.quota.usage_export import exporting_quota_usage
from app.relay import admin, endpoint, gemini_paths, health
from app.relay.admission.early_connect import EarlyConnects
from app.relay.admission.pending import PendingAdmissions
from app.relay.client.bounded_protocols import INPUT_BUDGET_STATE, METRICS_STATE
from app.relay.client.handles import ResumptionHandles
from app.relay.client.input_budget import InputBudget
from app.relay.heap import freeze_startup_heap
from app.relay.live_dispatch import RelayApp
from app.relay.metrics_port import metrics_port
from app.relay.runtime import Relay
from app.relay.session.drain import install_drain_on_sigterm
from app.relay.session.registry import LiveSessions
from app.relay.upstream.replay_budget import ReplayBudget
from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream import UpstreamConnector, live_url
from app.relay.upstream.vertex import GoogleTokenSource, vertex_connector
from app.settings import Settings, load_settings

logger = logging.getLogger(__name__)

TRAFFIC_FLUSH_SECONDS = 5.0
EMULATOR_PROJECT = "live-relay-dev"


async def _open_upstream(
    settings: Settings, stack: AsyncExitStack
) -> tuple[UpstreamConnector, GoogleTokenSource | None]:
    if settings.upstream == "vertex":
        return vertex_connector(settings)
    base_url = settings.emulator_url
    if base_url is None:
        emulator = Emulator(EmulatorConfig(known_models=settings.allowed_models))
        await emulator.start()
        stack.push_async_callback(emulator.stop)
        base_url = emulator.base_url
    target = UpstreamTarget(settings.vertex_project or EMULATOR_PROJECT, settings.vertex_location)
    url = live_url(base_url, settings.vertex_api_version)
    return UpstreamConnector(url=url, target=target, settings=settings), None


async def _flush_traffic(
    sessions: LiveSessions,
    metrics: RelayMetrics,
    replay_budget: ReplayBudget,
    input_budget: InputBudget,
) -> None:
    """Move frame and byte counts of live sessions, and the bytes the budgets see held, into
    metrics every few seconds."""
    while True:
        await asyncio.sleep(TRAFFIC_FLUSH_SECONDS)
        t = sessions.take_traffic()
        metrics.add_traffic(t.frames_in, t.bytes_in, t.frames_out, t.bytes_out)
        replay_budget.report()
        input_budget.report()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def reload_projects_on_sighup(projects: ProjectRegistry, stack: AsyncExitStack) -> None:
    """`kill -HUP` re-reads the projects file without dropping a session."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread (not there under a test client)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, projects.reload)
    stack.callback(loop.remove_signal_handler, signal.SIGHUP)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The relay app; `settings` default to the environment (uvicorn --factory workers)."""
    settings = settings or load_settings()
    registry = metrics_registry()
    metrics = RelayMetrics(registry)
    ledger_metrics = LedgerMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            # First in, last out: sessions that end while the app stops still get a record.
            ledger = await open_ledger(settings, ledger_metrics)
            stack.push_async_callback(ledger.aclose, settings.ledger_timeout_seconds)
            connector, google_tokens = await _open_upstream(settings, stack)
            if google_tokens is not None:
                stack.push_async_callback(_stop, asyncio.create_task(google_tokens.keep_fresh()))
            store = open_quota_store(settings)
            stack.push_async_callback(store.aclose)
            sessions = LiveSessions()
            quota = QuotaKeeper(store, settings, on_slot_lost=sessions.slot_lost)
            await quota.start()
            stack.push_async_callback(quota.aclose)
            projects = ProjectRegistry.from_settings(settings)
            authenticator = Authenticator(projects, settings, store)
            stack.push_async_callback(authenticator.aclose)
            reload_projects_on_sighup(projects, stack)
            await stack.enter_async_context(
                exporting_quota_usage(
                    store,
                    lambda: {name: p.quota for name, p in projects.projects.items()},
                    metrics,
                    settings.lease_ttl_seconds,
                )
            )
            replay_budget = ReplayBudget(settings.resumption_buffer_budget_bytes, metrics)
            input_budget = InputBudget(settings.client_input_budget_bytes, metrics)
            app.state.relay = Relay(
                settings=settings,
                connector=connector,
                authenticator=authenticator,
                quota=quota,
                store=store,
                metrics=metrics,
                sessions=sessions,
                google_tokens=google_tokens,
                pending=PendingAdmissions(
                    settings.max_pending_admissions_per_project,
                    settings.max_pending_admissions_per_credential,
                ),
                early_connects=EarlyConnects(enabled=settings.upstream_early_connect),
                handles=ResumptionHandles.from_settings(settings),
                ledger=ledger,
                budgets=Budgets(store, ledger_metrics, fail_open=settings.quota_fail_open),
                replay_budget=replay_budget,
                input_budget=input_budget,
            )
            # The token route needs the authenticator, which needs the store this lifespan
            # opens; routes are looked up per request, so adding it here is safe.
            app.include_router(build_token_router(authenticator, settings))
            if settings.metrics_enabled and not settings.metrics_on_client_port:
                port = stack.enter_context(metrics_port(registry, settings))
                logger.info("metrics on port %d", port)
            flusher = asyncio.create_task(
                _flush_traffic(sessions, metrics, replay_budget, input_budget)
            )
            install_drain_on_sigterm(sessions, settings.drain_seconds)
            freeze_startup_heap()
            logger.info("relay ready, upstream %s", connector.url)
            try:
                # Lifespan state reaches uvicorn's protocols too: they count their refusals
                # and charge what they hold for clients.
                yield {METRICS_STATE: metrics, INPUT_BUDGET_STATE: input_budget}
            finally:
                await _stop(flusher)

    app = RelayApp(
        title="live-relay",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(endpoint.router)
    app.include_router(gemini_paths.router)
    gemini_paths.refuse_unknown_websocket_paths(app)
    app.include_router(assets.router(demo_page=settings.demo_page))
    # Middlewares never see `WS /v1/live`: RelayApp serves it past them (live_dispatch.py).
    app.add_middleware(TokenCors)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(ledger_routes.router)
    if settings.metrics_enabled and settings.metrics_on_client_port:
        app.router.routes.append(metrics_route(registry, settings.metrics_token))
    return app
