"""Who is asking (`Principal`) and why they were turned away (`AuthFailure`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import JSONResponse

from app.auth.projects import Project
from app.web import STATUS_NAMES, error_response

Method = Literal["api_key", "jwt", "firebase", "session_token"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the project it acts for and, when known, the end user.

    `forced_setup` holds the setup fields a session token locks (camelCase, as in the Live API
    setup message): the relay writes them over whatever the client sends. `expires_at` (epoch
    seconds) is when the credential stops being valid: sessions started with a session token
    may run until then, no longer; None for API keys.
    """

    project: Project
    user: str | None
    method: Method
    forced_setup: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    # A session token presented with `?resume=1`: it spent no use, so its session must resume
    # one it started (setup.sessionResumption.handle); see docs/resumption.md.
    resume_only: bool = False
    # Who vouches for `user`: the JWT's issuer, the Firebase project's issuer, or the issuer a
    # session token recorded. One `sub` from two issuers is two users.
    issuer: str | None = None
    # A stable, non-secret name of the credential itself: a session token's id (`jti`), an API
    # key's hash as the projects file holds it; None for JWTs (a user's tokens change, the
    # user does not).
    credential_id: str | None = None

    @property
    def credential(self) -> str:
        """The credential's non-secret name in usage records and reports: "api_key:<key hash>",
        "session_token:<token id>", "jwt:<issuer>:<subject>", "firebase:<issuer>:<uid>"."""
        if self.credential_id is not None:
            return f"{self.method}:{self.credential_id}"
        return f"{self.method}:{self.issuer}:{self.user}"

    def quota_user(self) -> str | None:
        """The user as quotas and resumption handles know it: scoped by its issuer."""
        if self.user is None or self.issuer is None:
            return self.user
        return f"{self.user} ({self.issuer})"


class AuthFailure(Exception):
    """A request refused before anything reaches the upstream.

    401 UNAUTHENTICATED: no credential, or one that does not verify.
    403 PERMISSION_DENIED: a valid credential that is not allowed here (origin, disabled project,
        session token used up or past its new-session deadline).
    400 INVALID_ARGUMENT: a token request the relay cannot grant as asked (`POST /v1/tokens`).
    503 UNAVAILABLE: the relay could not check the credential (signing keys or the use-count
        store out of reach); the client may retry.

    `message` says what was wrong and how to fix it, and never echoes a secret. `reason` is a
    low-cardinality label for metrics and logs ("missing", "invalid", "expired", "origin", ...).
    """

    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.status = STATUS_NAMES[status_code]
        self.reason = reason
        self.message = message

    @classmethod
    def unauthenticated(cls, reason: str, message: str) -> AuthFailure:
        return cls(401, reason, message)

    @classmethod
    def forbidden(cls, reason: str, message: str) -> AuthFailure:
        return cls(403, reason, message)

    @classmethod
    def bad_request(cls, reason: str, message: str) -> AuthFailure:
        return cls(400, reason, message)

    @classmethod
    def unavailable(cls, reason: str, message: str) -> AuthFailure:
        return cls(503, reason, message)

    def response(self) -> JSONResponse:
        """The HTTP answer: for a token request, or as a WebSocket handshake denial."""
        return error_response(self.status_code, self.message)
