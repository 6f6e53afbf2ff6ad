"""Admin endpoints, for `Authorization: Bearer $RELAY_ADMIN_TOKEN`: a project's quota usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.auth.projects import Project
from app.quota.types import QuotaStoreError
from app.relay.runtime import Relay
from app.web import bearer_matches, error_response

router = APIRouter()


def admin_project(relay: Relay, request: Request, project: str) -> Project | JSONResponse:
    """The configured project an admin request names, or the error answer: 403 with admin
    endpoints off, 401 without the admin token, 404 for a project that is not configured."""
    token = relay.settings.admin_token
    if token is None:
        return error_response(403, "admin endpoints are off: set RELAY_ADMIN_TOKEN")
    if not bearer_matches(request.headers.get("authorization"), token):
        return error_response(401, "send Authorization: Bearer <RELAY_ADMIN_TOKEN>")
    config = relay.authenticator.registry.get(project)
    if config is None:
        return error_response(404, f'no project "{project}" is configured')
    return config


def _time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


@router.get("/v1/projects/{project}/usage")
async def project_usage(project: str, request: Request) -> JSONResponse:
    relay: Relay = request.app.state.relay
    config = admin_project(relay, request, project)
    if isinstance(config, JSONResponse):
        return config
    try:
        leases = await relay.store.sessions(project)
        window = await relay.store.window(project, config.quota)
    except QuotaStoreError:
        return error_response(503, "quota store unreachable")
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
