"""Admin endpoints, for `Authorization: Bearer $RELAY_ADMIN_TOKEN`: a project's quota usage."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.quota.types import QuotaStoreError
from app.relay.runtime import Relay

router = APIRouter()


def _error(status: int, name: str, message: str) -> JSONResponse:
    body = {"error": {"code": status, "status": name, "message": message}}
    return JSONResponse(body, status_code=status)


def _admin_refusal(relay: Relay, request: Request) -> JSONResponse | None:
    token = relay.settings.admin_token
    if token is None:
        return _error(403, "PERMISSION_DENIED", "admin endpoints are off: set RELAY_ADMIN_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return _error(401, "UNAUTHENTICATED", "send Authorization: Bearer <RELAY_ADMIN_TOKEN>")
    return None


def _time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


@router.get("/v1/projects/{project}/usage")
async def project_usage(project: str, request: Request) -> JSONResponse:
    relay: Relay = request.app.state.relay
    refusal = _admin_refusal(relay, request)
    if refusal is not None:
        return refusal
    config = relay.authenticator.registry.get(project)
    if config is None:
        return _error(404, "NOT_FOUND", f'no project "{project}" is configured')
    try:
        leases = await relay.store.sessions(project)
        window = await relay.store.window(project, config.quota)
    except QuotaStoreError:
        return _error(503, "UNAVAILABLE", "quota store unreachable")
    body: dict[str, Any] = {
        "project": project,
        "sessions": {
            "active": len(leases),
            "limit": config.quota.max_sessions,
            "perUserLimit": config.quota.max_sessions_per_user,
            "list": [
                {
                    "sessionId": lease.session_id,
                    "user": lease.user,
                    "startTime": _time(lease.started_at),
                }
                for lease in sorted(leases, key=lambda lease: lease.started_at)
            ],
        },
        "tokens": {
            "windowSeconds": 60,
            "used": window.used,
            "limit": window.limit,
            "secondsUntilFree": window.seconds_until_free,
        },
    }
    return JSONResponse(body)
