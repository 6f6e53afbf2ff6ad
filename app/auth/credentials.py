"""Where a credential may travel, and finding exactly one of them in a request.

Servers, mobile apps and the google-genai SDK send a header (`Authorization: Bearer`,
`x-goog-api-key`). The Python SDK sends an ephemeral token (`api_key="auth_tokens/..."`) twice:
as `Authorization: Token auth_tokens/<token>` and as `x-goog-api-key: auth_tokens/<token>`; the
`auth_tokens/` prefix is dropped wherever a credential travels, so both name one credential.
Browsers cannot set headers on a WebSocket, so they put the credential in the
URL (`?access_token=`, `?key=`) or offer it as the subprotocol after ours:
`new WebSocket(url, ["live-relay", token])`. The relay echoes only `live-relay` back.

A request that carries two different credentials is refused rather than guessing which one the
client meant: the wrong guess would act for the wrong principal.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from app.auth.principal import AuthFailure

RELAY_SUBPROTOCOL = "live-relay"
APP_CHECK_HEADER = "x-firebase-appcheck"
APP_CHECK_QUERY = "app_check"
CREDENTIAL_QUERY_PARAMETERS = ("access_token", "key")
EPHEMERAL_TOKEN_PREFIX = "auth_tokens/"  # noqa: S105 (a name prefix, not a secret)
AUTHORIZATION_SCHEMES = ("bearer", "token")  # `Token` is the Python SDK's, for ephemeral tokens
# Real tokens are a few hundred bytes to a few KiB; anything longer is not worth parsing.
MAX_CREDENTIAL_LENGTH = 8192


@dataclass(frozen=True)
class PresentedCredentials:
    """What a request carries: the credential, and a Firebase App Check token if any."""

    credential: str
    app_check: str | None


def offered_subprotocols(conn: HTTPConnection) -> list[str]:
    """Every subprotocol the client offered, in order (the header may repeat)."""
    offered: list[str] = []
    for value in conn.headers.getlist("sec-websocket-protocol"):
        offered.extend(item.strip() for item in value.split(",") if item.strip())
    return offered


def select_subprotocol(conn: HTTPConnection) -> str | None:
    """The subprotocol to accept: ours when offered, else none. Never the token."""
    return RELAY_SUBPROTOCOL if RELAY_SUBPROTOCOL in offered_subprotocols(conn) else None


def find_credentials(conn: HTTPConnection) -> PresentedCredentials:
    """The one credential `conn` carries, or AuthFailure(401) when none, or two that differ."""
    credential = _single("credential", _credential_candidates(conn))
    if credential is None:
        raise AuthFailure.unauthenticated(
            "missing",
            "no credential: send `Authorization: Bearer <token>`, `x-goog-api-key`, "
            "`?access_token=`, `?key=`, or the subprotocols "
            f'["{RELAY_SUBPROTOCOL}", "<token>"]',
        )
    app_check = _single(
        "App Check token",
        [
            *(("X-Firebase-AppCheck header", v) for v in conn.headers.getlist(APP_CHECK_HEADER)),
            *((f"?{APP_CHECK_QUERY}=", v) for v in conn.query_params.getlist(APP_CHECK_QUERY)),
        ],
    )
    return PresentedCredentials(credential=credential, app_check=app_check)


def _credential_candidates(conn: HTTPConnection) -> list[tuple[str, str]]:
    """(where, value) for every place a credential was found, empty values included."""
    found: list[tuple[str, str]] = []
    for header in conn.headers.getlist("authorization"):
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() not in AUTHORIZATION_SCHEMES:
            raise AuthFailure.unauthenticated(
                "malformed",
                "the Authorization header must be `Bearer <token>` (or the SDK's "
                "`Token auth_tokens/<token>`)",
            )
        found.append(("Authorization header", value))
    found.extend(("x-goog-api-key header", v) for v in conn.headers.getlist("x-goog-api-key"))
    for name in CREDENTIAL_QUERY_PARAMETERS:
        # The @google/genai SDK sends ephemeral tokens as `?access_token=auth_tokens/<token>`.
        found.extend((f"?{name}=", v) for v in conn.query_params.getlist(name))
    offered = offered_subprotocols(conn)
    if RELAY_SUBPROTOCOL in offered:
        after_ours = offered.index(RELAY_SUBPROTOCOL) + 1
        if after_ours < len(offered):
            found.append(("Sec-WebSocket-Protocol", offered[after_ours]))
    return [(where, value.strip().removeprefix(EPHEMERAL_TOKEN_PREFIX)) for where, value in found]


def _single(what: str, candidates: list[tuple[str, str]]) -> str | None:
    values = {value.strip() for _, value in candidates}
    if not values:
        return None
    if len(values) > 1:
        places = ", ".join(sorted({where for where, _ in candidates}))
        raise AuthFailure.unauthenticated(
            "conflicting", f"more than one {what} in the request ({places}): send exactly one"
        )
    value = values.pop()
    if not value:
        raise AuthFailure.unauthenticated("malformed", f"the {what} is empty")
    if len(value) > MAX_CREDENTIAL_LENGTH or not value.isascii() or not value.isprintable():
        raise AuthFailure.unauthenticated("malformed", f"the {what} is not a well-formed token")
    return value
