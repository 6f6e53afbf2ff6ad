"""`POST /v1/tokens`: a backend trades its credential for a short-lived session token to hand
to a browser, as with Google's ephemeral tokens (which Vertex AI does not offer).

The project's session-token policy sets the defaults and the ceilings: the caller may ask for
fewer uses and earlier times, never more. Times past a ceiling are cut to it (the response says
what was granted; a caller's clock a second ahead should not fail the request); more uses than
the ceiling is refused.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from app import bounded_json
from app.auth.authenticator import Authenticator
from app.auth.principal import AuthFailure, Principal
from app.auth.session_tokens import SessionGrant, new_token_id
from app.auth.setup_locks import (
    bare_model_name,
    canonical_setup_fields,
    check_lockable,
    first_conflict,
)
from app.settings import Settings

MAX_REQUEST_BYTES = 64 * 1024
# Every token the relay mints must work wherever a credential may travel: `?access_token=` on a
# request line and the `Sec-WebSocket-Protocol` header line, both under 8 KiB at the relay and
# at common proxies (nginx, Envoy). 4 KiB leaves room for the rest of the URL and an App Check
# token beside it.
MAX_SESSION_TOKEN_LENGTH = 4096
MAX_USER_LENGTH = 128


class TokenRequest(BaseModel):
    """The request body; every field optional. camelCase or snake_case names."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )

    uses: int | None = Field(None, ge=1)
    expire_time: AwareDatetime | None = None
    new_session_expire_time: AwareDatetime | None = None
    locked_setup: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(None, min_length=1, max_length=MAX_USER_LENGTH)


def build_token_router(authenticator: Authenticator, settings: Settings) -> APIRouter:
    """The router serving `POST /v1/tokens`."""
    router = APIRouter()

    @router.post("/v1/tokens")
    async def create_session_token(request: Request) -> JSONResponse:
        try:
            principal = await authenticator.authenticate_token_request(request)
            asked = await _read_token_request(request)
            grant = _grant(principal, asked, settings, now=time.time())
            token = authenticator.session_tokens.mint(grant)
            if len(token) > MAX_SESSION_TOKEN_LENGTH:
                raise AuthFailure.bad_request(
                    "too_large",
                    f"the token would be {len(token)} characters, over the "
                    f"{MAX_SESSION_TOKEN_LENGTH} a session token may have: "
                    "lock fewer or smaller fields",
                )
        except AuthFailure as failure:
            return failure.response()
        body = {
            "token": token,
            "expireTime": _timestamp(grant.expire_time),
            "newSessionExpireTime": _timestamp(grant.new_session_expire_time),
            "uses": grant.uses,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router


async def _read_token_request(request: Request) -> TokenRequest:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_REQUEST_BYTES:
            raise AuthFailure.bad_request(
                "invalid", f"the request body is over {MAX_REQUEST_BYTES} bytes"
            )
    try:
        document = bounded_json.loads(bytes(raw)) if raw.strip() else {}
    except bounded_json.JsonRejected:
        raise AuthFailure.bad_request("invalid", "the request body is not JSON") from None
    if not isinstance(document, dict):
        raise AuthFailure.bad_request("invalid", "the request body must be a JSON object")
    try:
        return TokenRequest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise AuthFailure.bad_request("invalid", f"invalid token request: {problems}") from None


def _grant(
    principal: Principal, asked: TokenRequest, settings: Settings, now: float
) -> SessionGrant:
    project, policy = principal.project, principal.project.session_tokens
    uses = asked.uses if asked.uses is not None else policy.max_uses
    if uses > policy.max_uses:
        raise AuthFailure.bad_request(
            "invalid", f"uses may be at most {policy.max_uses} for this project"
        )
    expire_time = _not_after(asked.expire_time, now + policy.lifetime_seconds, now, "expireTime")
    new_session_expire_time = _not_after(
        asked.new_session_expire_time,
        min(expire_time, now + policy.new_session_seconds),
        now,
        "newSessionExpireTime",
    )
    if asked.user is not None and principal.user not in (None, asked.user):
        raise AuthFailure.forbidden(
            "not_allowed", "a user's credential cannot mint tokens for another user"
        )
    locked_setup = _checked_locked_setup(asked.locked_setup, principal, settings)
    return SessionGrant(
        token_id=new_token_id(),
        project=project.name,
        user=asked.user or principal.user,
        user_issuer=principal.issuer,
        uses=uses,
        expire_time=math.floor(expire_time),
        new_session_expire_time=math.floor(new_session_expire_time),
        forced_setup=locked_setup,
    )


def _not_after(asked: datetime | None, ceiling: float, now: float, name: str) -> float:
    if asked is None:
        return ceiling
    wanted = asked.timestamp()
    if wanted <= now + 1:
        raise AuthFailure.bad_request("invalid", f"{name} must be in the future")
    return min(wanted, ceiling)


def _checked_locked_setup(
    asked: dict[str, Any], principal: Principal, settings: Settings
) -> dict[str, Any]:
    """The token's locks in canonical form; 400 if they are not a valid part of a setup, 403 if
    they contradict what the project locks (in either spelling)."""
    try:
        locked = canonical_setup_fields(asked, "lockedSetup")
    except ValueError as exc:
        raise AuthFailure.bad_request("invalid", str(exc)) from None
    try:
        check_lockable(locked)
    except ValueError as exc:
        raise AuthFailure.bad_request("invalid", f"lockedSetup: {exc}") from None
    project = principal.project
    model = locked.get("model")
    if isinstance(model, str) and bare_model_name(model) not in project.models(settings):
        raise AuthFailure.bad_request(
            "invalid",
            f'lockedSetup.model "{bare_model_name(model)}" is not allowed for this project',
        )
    conflict = first_conflict(project.locked_setup, locked)
    if conflict is not None:
        raise AuthFailure.forbidden(
            "locked", f"lockedSetup.{conflict} differs from the value the project locks"
        )
    return locked


def _timestamp(seconds: int) -> str:
    """RFC 3339 in UTC, as Google APIs write timestamps."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
