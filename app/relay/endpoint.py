"""`WS /v1/live`: authenticate; read the setup, take a quota slot, connect upstream, side by side;
relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.auth.credentials import select_subprotocol
from app.auth.principal import AuthFailure, Principal
from app.ledger.ledger import SessionStart
from app.logs import hash_user, session_id_var
from app.protocol.errors import ProtocolViolation
from app.quota.refusals import over_budget_reason
from app.quota.types import Lease, QuotaLimits
from app.relay.admission.early_connect import UpstreamOpening
from app.relay.admission.pending import PendingSlot, credential_id
from app.relay.client.bounded_protocols import (
    admit_full_frames,
    client_lane,
    handshake_done,
    held_input,
)
from app.relay.client.client_frames import ClientFrames, FrameRules
from app.relay.client.client_gone import client_left
from app.relay.client.dialect import (
    Dialect,
    default_to_audio,
    gemini_dialect_leg,
    translate_setup,
)
from app.relay.client.refusals import Refusal, refuse
from app.relay.client.setup_policy import AcceptedSetup, SetupPolicy, apply_setup_policy
from app.relay.closes import (
    GOING_AWAY,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Ending,
    truncate_reason,
)
from app.relay.runtime import Relay
from app.relay.session.session import Session, SessionLimits, goaway_frame
from app.relay.sniff import Usage
from app.relay.upstream.estimated_usage import estimated_usage_leg
from app.relay.upstream.resumable_upstream import ResumableUpstream, resumption_policy
from app.relay.upstream.upstream import UpstreamUnavailable
from app.relay.upstream.upstream_leg import UpstreamLeg, close_in_background

logger = logging.getLogger(__name__)

router = APIRouter()

LIVE_PATH = "/v1/live"


# A plain Starlette route: FastAPI's WebSocket route would hold its dependency-solving frames and
# exit stack for the whole session, ~4 KB RSS per live session, for no dependency at all. (The
# app serves it without its router and middlewares, see live_dispatch.py; the route stays for
# a relay under a root path.)
@router.websocket_route(LIVE_PATH)
async def live(websocket: WebSocket) -> None:
    await serve_live(websocket, "vertex")


async def serve_live(websocket: WebSocket, dialect: Dialect) -> None:
    """A Live session over `websocket`, whose client speaks `dialect` (see dialect.py)."""
    relay: Relay = websocket.app.state.relay
    if relay.sessions.draining:
        await refuse(websocket, Refusal(503, "the relay is shutting down: reconnect"))
        return
    try:
        principal = await relay.authenticator.authenticate(websocket)
    except AuthFailure as failure:
        relay.metrics.auth_failures_total.labels(failure.reason).inc()
        logger.info("handshake refused (%s): %s", failure.status_code, failure.message)
        await refuse(websocket, Refusal.from_auth_failure(failure))
        return
    pending = await relay.pending.take(principal.project.name, credential_id(websocket))
    if isinstance(pending, str):  # charged before the setup is read: refused, it costs nothing
        logger.info("handshake refused (429): %s", pending)
        relay.metrics.record_refusal("pending_admissions")
        await refuse(websocket, Refusal(429, pending))
        return
    session_id = secrets.token_hex(8)
    context = session_id_var.set(session_id)
    try:
        await websocket.accept(subprotocol=select_subprotocol(websocket))
        # The handshake's paced part ends with the 101: what follows waits on this client (its
        # setup), which must not hold up the next handshake.
        handshake_done(websocket)
        await _serve(relay, websocket, principal, session_id, dialect, pending)
    except Exception as exc:
        # The session boundary: whatever went wrong, log it once and still send a close frame.
        cause = client_left(exc)
        if cause is not None:
            logger.info("client left before the session ended: %s", cause)
        else:
            logger.exception("session failed")
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close(INTERNAL_ERROR, "internal error")
    finally:
        pending.release()
        session_id_var.reset(context)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.close(code, truncate_reason(reason))


async def _read_setup(relay: Relay, websocket: WebSocket) -> str | bytes | None:
    """The client's first frame, or None after closing the client (timeout, oversize, gone)."""
    try:
        async with asyncio.timeout(relay.settings.setup_timeout_seconds):
            message = await websocket.receive()
    except TimeoutError:
        seconds = relay.settings.setup_timeout_seconds
        await _close(websocket, POLICY_VIOLATION, f"no setup message within {seconds:g}s")
        return None
    if message["type"] != "websocket.receive":
        return None
    frame: str | bytes = message.get("bytes") or message.get("text") or ""
    if len(frame) > relay.settings.max_setup_frame_bytes:
        limit = relay.settings.max_setup_frame_bytes
        await _close(websocket, MESSAGE_TOO_BIG, f"setup frame exceeds the limit of {limit} bytes")
        return None
    return frame


async def _serve(
    relay: Relay,
    websocket: WebSocket,
    principal: Principal,
    session_id: str,
    dialect: Dialect,
    pending: PendingSlot,
) -> None:
    project = principal.project
    lease = Lease(project.name, principal.quota_user(), session_id, time.time())  # issuer-scoped
    # The upstream connection opens (see early_connect.py) while the setup is read and the
    # quota answers: their waits run side by side instead of in a row.
    upstream = UpstreamOpening(relay.connector.connect, relay.metrics)
    upstream.start_early(relay.early_connects, project.name, project.quota.max_sessions)
    try:
        setup = await _admitted_setup(relay, websocket, principal, dialect, pending, lease)
        if setup is None:
            return
        upstream.admitted()
        try:
            if await _refused_by_budget(relay, websocket, principal):
                return
            await _relay(relay, websocket, principal, setup, session_id, dialect, upstream)
        finally:
            # Shielded: a cancelled session (shutdown) must still give its slot back.
            await asyncio.shield(relay.quota.release(lease))
    finally:
        upstream.discard()


async def _refused_by_budget(relay: Relay, websocket: WebSocket, principal: Principal) -> bool:
    """Whether the project or user spent a budget (docs/usage.md#budgets); if so the client is
    closed with 1013 and a reason naming the budget, its use and when it resets."""
    project = principal.project
    if not project.budgets.any:
        return False
    # The user as quotas know it: one `sub` of two issuers is two users, with two budgets.
    user = principal.quota_user()
    state = await relay.budgets.admit(project.name, user, project.budgets, time.time())
    if state.refusal is None:
        return False
    relay.metrics.quota_rejections_total.labels(project.name, "budget").inc()
    relay.metrics.sessions_total.labels(project.name, "quota_refused").inc()
    logger.info("session refused: %s", state.refusal)
    await _close(websocket, TRY_AGAIN_LATER, state.refusal)
    return True


async def _charge_window(
    relay: Relay,
    websocket: WebSocket,
    project: str,
    session_id: str,
    tokens: int,
    quota: QuotaLimits,
) -> str | None:
    """Charge the project's token window; the close reason if this session is to end at its
    turn boundary: shed (the "shed" policy) or, under "end_all", whenever the budget is spent.
    The client reads a goAway first, then the close (docs/quotas.md#over-the-budget)."""
    shedding = quota.over_budget == "shed"
    window = await relay.quota.charge_session(
        project, session_id if shedding else None, tokens, quota
    )
    if window is None or not (window.shed if shedding else window.spent):
        return None
    relay.metrics.sessions_shed_total.labels(quota.over_budget).inc()
    relay.metrics.goaways_total.labels("tokens").inc()
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.send_bytes(goaway_frame(0))
    reason = over_budget_reason(project, window)
    logger.info("session ends over the token budget (%s): %s", quota.over_budget, reason)
    return reason


async def _charge_budgets(
    relay: Relay, principal: Principal, model: str, tokens: int, columns: dict[str, int]
) -> str | None:
    """Count a usage report against the project's and user's budgets; the refusal reason once
    one is spent."""
    project = principal.project
    usd = 0.0
    if project.budgets.usd_per_month is not None:
        price = relay.ledger.prices.with_overrides(project.name, project.prices).for_model(model)
        usd = price.cost(columns) if price is not None else 0.0
    state = await relay.budgets.charge(
        project.name, principal.quota_user(), project.budgets, time.time(), tokens=tokens, usd=usd
    )
    return state.refusal


async def _admitted_setup(
    relay: Relay,
    websocket: WebSocket,
    principal: Principal,
    dialect: Dialect,
    pending: PendingSlot,
    lease: Lease,
) -> AcceptedSetup | None:
    """The client's setup, once both it and the session's quota slot are accepted; else None
    after closing the client, with no slot left taken.

    The quota answers while the setup is on its way: the admission's round trip to Redis and
    its passes of the event loop are off the set-up's critical path. A setup the policy
    refuses then gives back a slot it held for a moment."""
    project = principal.project
    admission = relay.quota.admit_in_background(lease, project.quota)
    setup: AcceptedSetup | None = None
    try:
        setup = await _accepted_setup(relay, websocket, principal, dialect)
        if setup is None:
            return None
        refusal = await relay.quota.confirm(admission, lease, project.quota)
    finally:
        if setup is None or not admission.done():
            # The setup was refused or the client left (or the session was cancelled) before
            # the slot was in use.
            relay.quota.abandon(admission, lease)
    pending.release()
    if refusal is not None:
        relay.metrics.quota_rejections_total.labels(project.name, refusal.kind).inc()
        relay.metrics.sessions_total.labels(project.name, "quota_refused").inc()
        logger.info("session refused: %s", refusal.reason)
        await _close(websocket, TRY_AGAIN_LATER, refusal.reason)
        return None
    admit_full_frames(websocket)
    if not relay.quota.store_healthy:  # admitted although the store is away: fail-open
        relay.metrics.fail_open_admissions_total.labels(project.name).inc()
    return setup


async def _accepted_setup(
    relay: Relay, websocket: WebSocket, principal: Principal, dialect: Dialect
) -> AcceptedSetup | None:
    """The client's setup after the project's policy, or None after closing the client."""
    frame = await _read_setup(relay, websocket)
    if frame is None:
        return None
    try:
        return _apply_policy(relay, principal, dialect, frame)
    except ProtocolViolation as rejected:
        relay.metrics.sessions_total.labels(principal.project.name, "setup_rejected").inc()
        logger.info("setup refused: %s", rejected.reason)
        await _close(websocket, rejected.code, rejected.reason)
        return None


def _setup_policy(relay: Relay, principal: Principal) -> SetupPolicy:
    project = principal.project
    return SetupPolicy(
        allowed_models=project.models(relay.settings),
        allowed_by=(
            "RELAY_ALLOWED_MODELS"
            if project.allowed_models is None
            else f"allowed_models of project {project.name}"
        ),
        locked=project.locked_setup,
        forced=principal.forced_setup,
        defaults=project.default_setup,
        keep_unknown=relay.settings.forward_unknown_client_fields,
    )


def _apply_policy(
    relay: Relay, principal: Principal, dialect: Dialect, frame: str | bytes
) -> AcceptedSetup:
    """The setup as it goes upstream (ProtocolViolation: it cannot)."""
    policy = _setup_policy(relay, principal)
    if dialect == "gemini":
        frame = translate_setup(frame)
    setup = apply_setup_policy(frame, policy, relay.connector.target)
    if dialect == "gemini":
        setup = default_to_audio(setup)
    # The client's handle is the relay's, bound to its tenant: the upstream gets its own.
    return relay.handles.admit_setup(setup, principal)


async def _relay(
    relay: Relay,
    websocket: WebSocket,
    principal: Principal,
    setup: AcceptedSetup,
    session_id: str,
    dialect: Dialect,
    upstream: UpstreamOpening,
) -> None:
    project = principal.project
    settings = relay.settings
    metrics = relay.metrics
    try:
        connection = await upstream.connection()
    except UpstreamUnavailable as exc:
        metrics.sessions_total.labels(project.name, "upstream_unavailable").inc()
        logger.warning(
            "upstream connect failed: %s",
            exc,
            extra={"project": project.name, "cause": exc.cause, "status": exc.status},
        )
        await _close(websocket, INTERNAL_ERROR, str(exc))
        return
    if relay.sessions.draining:
        # A client answered before SIGTERM whose setup came during the drain: refused as a
        # new handshake is. No await from here to `sessions.add`, so no session can join the
        # live ones after the drain counted them.
        close_in_background(connection, 1000, "session refused")
        metrics.sessions_total.labels(project.name, "drain").inc()
        logger.info("session refused: the relay is draining")
        await _close(websocket, GOING_AWAY, "the relay is shutting down: reconnect")
        return
    leg: UpstreamLeg = connection
    setup_frame = setup.frame
    client_sees_updates = True
    resumable: ResumableUpstream | None = None
    if project.resumes(settings):
        leg = resumable = ResumableUpstream(
            relay.connector.connect,
            connection,
            setup.frame,
            resumption_policy(settings),
            metrics,
            relay.replay_budget,
        )
        setup_frame = resumable.first_setup_frame
        client_sees_updates = resumable.client.asked
    if client_sees_updates:
        leg = relay.handles.sealing_leg(leg, principal)  # never an upstream handle to a client

    budget_bound: list[asyncio.TimerHandle] = []  # ends the session if no turn ends in time
    quota = project.quota
    over_budget: list[str] = []  # the close reason, once the token window ends this session

    async def charge(usage: Usage) -> str | None:
        columns = relay.ledger.add_usage(account, usage.report)
        metrics.tokens_total.labels(project.name, "prompt").inc(usage.prompt)
        metrics.tokens_total.labels(project.name, "response").inc(usage.response)
        spent = None
        if project.budgets.any:
            spent = await _charge_budgets(relay, principal, setup.model, usage.total, columns)
        if spent is not None and not budget_bound:
            # The client reads a goAway, then the close at the turn's end (or the bound's).
            grace = settings.budget_grace_seconds
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.send_bytes(goaway_frame(grace))
            metrics.goaways_total.labels("budget").inc()
            ending = Ending("relay", TRY_AGAIN_LATER, truncate_reason(spent), "tokens")
            budget_bound.append(asyncio.get_running_loop().call_later(grace, session.end, ending))
        if spent is not None:
            await relay.quota.charge(project.name, usage.total, project.quota)
            return spent
        if over_budget:  # decided at an earlier report of this turn: one goAway, one count
            shed_id = session_id if quota.over_budget == "shed" else None
            await relay.quota.charge_session(project.name, shed_id, usage.total, quota)
            return over_budget[0]
        reason = await _charge_window(
            relay, websocket, project.name, session_id, usage.total, quota
        )
        if reason is not None:
            over_budget.append(reason)
        return reason

    max_seconds = settings.max_session_seconds
    if principal.expires_at is not None:
        # A session token bounds the sessions it starts: none outlives the token.
        max_seconds = min(max_seconds, max(principal.expires_at - time.time(), 1.0))
    limits = SessionLimits(
        max_seconds=max_seconds,
        goaway_notice_seconds=min(settings.goaway_notice_seconds, max_seconds / 2),
        idle_seconds=settings.idle_timeout_seconds,
        max_frame_bytes=settings.max_frame_bytes,
        setup_complete_seconds=settings.setup_timeout_seconds,
        frames_per_second=project.input_limits.frames_per_second,
        bytes_per_second=project.input_limits.bytes_per_second,
    )
    if setup.model in settings.estimated_usage_models:
        leg = estimated_usage_leg(leg)  # its model reports no usage: estimate it
    if dialect == "gemini":
        leg = gemini_dialect_leg(leg)
    frames = ClientFrames(
        FrameRules(
            locks=_setup_policy(relay, principal).session_locks(),
            drop_locked_updates=project.on_locked_update == "drop",
            keep_unknown=settings.forward_unknown_client_fields,
        )
    )
    session = Session(
        websocket,
        leg,
        setup_frame,
        limits,
        charge,
        frames,
        client_lane=client_lane(websocket),
        held_input=held_input(websocket),
    )
    relay.sessions.add(session, session_id)
    metrics.sessions_active.labels(project.name).inc()
    logger.info(
        "session started",
        extra={
            "project": project.name,
            "user": hash_user(principal.user),
            "model": setup.model,
            "auth": principal.method,
            "dialect": dialect,
        },
    )
    # The session's usage record (app/ledger): opened last, so nothing can fail before the
    # `finally` that closes it.
    account = relay.ledger.open(
        SessionStart(
            session_id,
            project.name,
            principal.user,
            principal.credential,
            principal.method,
            setup.model,
            time.time(),
        )
    )
    if resumable is not None:
        switching = resumable
        account.switches = lambda: switching.switches
    try:
        ending = await session.run()
    finally:
        for bound in budget_bound:
            bound.cancel()
        if resumable is not None:
            resumable.release()
        closing = session.ending or Ending("relay", INTERNAL_ERROR, "internal error", "error")
        relay.ledger.close(
            account,
            close_code=closing.code,
            closed_by=closing.closed_by,
            outcome=closing.outcome,
        )
        traffic = relay.sessions.remove(session, session_id)
        metrics.add_traffic(
            traffic.frames_in, traffic.bytes_in, traffic.frames_out, traffic.bytes_out
        )
        metrics.sessions_active.labels(project.name).dec()
        duration = time.time() - session.started_at
        metrics.session_duration_seconds.labels(project.name).observe(duration)
    metrics.sessions_total.labels(project.name, ending.outcome).inc()
    metrics.record_close(ending.closed_by, ending.code)
    if ending.outcome == "upstream_unavailable":  # connected, but setupComplete never came
        metrics.record_upstream_failure("setup_timeout", None)
    for why in session.goaways_sent:
        metrics.goaways_total.labels(why).inc()
    if session.traffic.goaways_from_upstream:
        metrics.goaways_total.labels("upstream").inc(session.traffic.goaways_from_upstream)
    t = session.traffic
    logger.info(
        "session ended",
        extra={
            "project": project.name,
            "user": hash_user(principal.user),
            "model": setup.model,
            "duration_s": round(duration, 3),
            "closed_by": ending.closed_by,
            "code": ending.code,
            "reason": ending.reason,
            "outcome": ending.outcome,
            "frames_in": t.frames_in,
            "bytes_in": t.bytes_in,
            "frames_out": t.frames_out,
            "bytes_out": t.bytes_out,
            "fast_frames_in": t.fast_in,
            "fast_frames_out": t.fast_out,
            "prompt_tokens": t.prompt_tokens,
            "response_tokens": t.response_tokens,
            "locked_updates_dropped": frames.dropped_updates,
        },
    )
