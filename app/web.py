"""What every HTTP answer of the relay shares: one error shape and one bearer-token check.

Errors look like Google API errors, `{"error": {"code", "status", "message"}}`, whether they
refuse a WebSocket handshake, a token request, an admin call or a metrics scrape.
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import SecretStr
from starlette.responses import JSONResponse

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    414: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    431: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": STATUS_NAMES[code], "message": message}}


def error_response(code: int, message: str) -> JSONResponse:
    """The HTTP error answer; a 401 also names the scheme to use (`WWW-Authenticate`)."""
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return JSONResponse(error_body(code, message), status_code=code, headers=headers)


def bearer_matches(authorization: str | None, expected: SecretStr) -> bool:
    """Whether an `Authorization` header carries `Bearer <expected>` (constant-time compare)."""
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.get_secret_value().encode()
    )
