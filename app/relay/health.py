"""`/healthz` (the process answers) and `/readyz` (it should get new sessions)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.relay.runtime import Relay
from app.relay.upstream.upstream import UpstreamUnavailable

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """503 while draining, while the quota store is unreachable (fail-closed), or while the
    upstream credentials cannot produce a token: a load balancer then sends sessions elsewhere."""
    relay: Relay = request.app.state.relay
    checks = {
        "draining": "yes" if relay.sessions.draining else "no",
        "quota_store": "ok" if relay.quota.store_healthy else "unreachable",
        "upstream_credentials": "ok",
    }
    if relay.google_tokens is not None:
        try:
            await relay.google_tokens.headers()
        except UpstreamUnavailable:
            checks["upstream_credentials"] = "unusable"
    ready = (
        checks["draining"] == "no"
        and checks["upstream_credentials"] == "ok"
        and (checks["quota_store"] == "ok" or relay.settings.quota_fail_open)
    )
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)
