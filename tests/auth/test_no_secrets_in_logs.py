"""Whatever happens (accepted, refused, keys unreachable, file broken), the authentication layer
writes no credential into a log line."""

from __future__ import annotations

import logging

import jwt
import pytest

from app.auth.projects import ProjectRegistry
from tests.auth.clients import bearer, handshake, mint_token
from tests.auth.conftest import (
    ACME_KEY,
    AUDIENCE,
    GUARDED_KEY,
    HS_ISSUER,
    HS_SECRET,
    RS_ISSUER,
    TOKEN_SIGNING_KEY,
    Keys,
    World,
)
from tests.auth.keys import claims
from tests.auth.servers import AuthServer


def ours(record: logging.LogRecord) -> bool:
    """Lines of the relay's code, and warnings or errors about it from the server.

    uvicorn's and websockets' own DEBUG and INFO lines are left out: at DEBUG they print every
    request header, Authorization included, and their redaction belongs to the logging setup
    (app/logs.py), not to the authentication layer.
    """
    return record.name.startswith("app.") or record.levelno >= logging.WARNING


def fragments(secret: str, length: int = 16) -> set[str]:
    """Every `length`-character piece of a secret: a truncated key is still a leak. For a JWT,
    the payload and signature (its header is the same in many tokens and says nothing)."""
    secret = secret.split(".", 1)[1] if secret.count(".") == 2 else secret
    return {secret[i : i + length] for i in range(len(secret) - length + 1)}


async def test_no_credential_or_secret_appears_in_any_log_line(
    relay: AuthServer, world: World, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hs_token = jwt.encode(claims(HS_ISSUER, AUDIENCE), HS_SECRET, algorithm="HS256")
    expired = jwt.encode(claims(HS_ISSUER, AUDIENCE, lifetime=-9), HS_SECRET, algorithm="HS256")
    rs_token = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE))
    session_token = await mint_token(relay, bearer(ACME_KEY), {"uses": 1})
    wrong_key = ACME_KEY[:-3] + "zzz"
    attempts = [
        {"headers": bearer(ACME_KEY)},
        {"query": f"?key={wrong_key}"},
        {"query": f"?access_token={hs_token}"},
        {"headers": bearer(expired)},
        {"subprotocols": ["live-relay", session_token]},
        {"subprotocols": ["live-relay", session_token]},  # used up
        {"headers": {**bearer(GUARDED_KEY), "X-Firebase-AppCheck": hs_token}},
        {"query": f"?key={ACME_KEY}", "headers": bearer(hs_token)},  # conflicting
    ]
    world.key_server.down = True  # the JWKS fetch fails and is logged
    attempts.append({"headers": bearer(rs_token)})
    for attempt in attempts:
        await handshake(relay, **attempt)  # type: ignore[arg-type]
    registry = ProjectRegistry.from_settings(world.settings())
    # A plaintext key pasted where its hash belongs: the file is refused without quoting it.
    world.projects_file.write_text(f'[projects.p]\napi_keys = ["{ACME_KEY}"]\n')
    assert not registry.reload()

    secrets = [ACME_KEY, wrong_key, GUARDED_KEY, HS_SECRET, TOKEN_SIGNING_KEY]
    secrets += [hs_token, expired, rs_token, session_token]
    logged = "\n".join(
        logging.Formatter().format(record) for record in caplog.records if ours(record)
    )
    assert "could not load signing keys" in logged, "the failures above were logged"
    assert "keeping the previous projects" in logged
    for secret in secrets:
        for fragment in fragments(secret):
            assert fragment not in logged, f"part of a secret was logged: {fragment}"
