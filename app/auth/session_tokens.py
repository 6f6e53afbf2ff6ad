"""Relay-issued session tokens: short-lived, narrow credentials a backend hands to a browser.

A session token is an HS256 JWT signed with `RELAY_TOKEN_SIGNING_KEY` (shared by replicas), so
any replica can check it without a lookup. What it grants is in its claims: the project, the
user, how many sessions it may start and until when, and the setup fields it forces. Use
counts are kept in the quota store under the token's `jti`, so they hold across replicas.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt

from app.auth.jwt_tokens import verify_jwt
from app.auth.principal import AuthFailure
from app.auth.setup_locks import canonical_setup_fields
from app.settings import MIN_SIGNING_KEY_BYTES, Settings

logger = logging.getLogger(__name__)

# Claim values, not secrets.
SESSION_TOKEN_ISSUER = "live-relay"  # noqa: S105
SESSION_TOKEN_AUDIENCE = "live-relay/v1/live"  # noqa: S105
T = TypeVar("T")


@dataclass(frozen=True)
class SessionGrant:
    """What one session token allows. Times are unix seconds."""

    token_id: str
    project: str
    user: str | None
    uses: int
    expire_time: int
    new_session_expire_time: int
    forced_setup: Mapping[str, Any] = field(default_factory=dict)
    user_issuer: str | None = None
    """Who vouched for `user` when a JWT or Firebase user minted the token for itself: the
    token's sessions then count as that issuer's user (per-user caps, resumption handles)."""

    @property
    def use_key(self) -> str:
        """The quota-store key counting this token's uses (its id, never the token)."""
        return f"session-token:{self.token_id}"


def new_token_id() -> str:
    return secrets.token_urlsafe(16)


class SessionTokens:
    """Mints and reads session tokens with one signing key."""

    def __init__(self, signing_key: bytes) -> None:
        if len(signing_key) < MIN_SIGNING_KEY_BYTES:
            raise ValueError(
                f"RELAY_TOKEN_SIGNING_KEY must be at least {MIN_SIGNING_KEY_BYTES} bytes; "
                "make one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        self._key = signing_key

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionTokens:
        """With no signing key configured, a random one: tokens then work on this process only."""
        if settings.token_signing_key is None:
            logger.warning(
                "RELAY_TOKEN_SIGNING_KEY is not set: session tokens are signed with a random key "
                "and are refused by other replicas and after a restart"
            )
            return cls(secrets.token_bytes(MIN_SIGNING_KEY_BYTES))
        return cls(settings.token_signing_key.get_secret_value().encode())

    def mint(self, grant: SessionGrant) -> str:
        claims: dict[str, Any] = {
            "iss": SESSION_TOKEN_ISSUER,
            "aud": SESSION_TOKEN_AUDIENCE,
            "jti": grant.token_id,
            "prj": grant.project,
            "exp": grant.expire_time,
            "new_session_exp": grant.new_session_expire_time,
            "uses": grant.uses,
        }
        if grant.user is not None:
            claims["sub"] = grant.user
        if grant.forced_setup:
            claims["setup"] = dict(grant.forced_setup)
        if grant.user_issuer is not None:
            claims["uis"] = grant.user_issuer
        return jwt.encode(claims, self._key, algorithm="HS256")

    def read(self, token: str) -> SessionGrant:
        """The grant of a token this relay signed, expired or not (the caller judges time);
        AuthFailure(401) for anything else."""
        claims = verify_jwt(
            token,
            self._key,
            algorithm="HS256",
            audience=SESSION_TOKEN_AUDIENCE,
            issuer=SESSION_TOKEN_ISSUER,
            leeway_seconds=0,
            required=("exp", "iss", "aud", "jti"),
            verify_expiry=False,
        )
        # The signature is ours, so these only fail if the token came from another version.
        try:
            return SessionGrant(
                token_id=_typed(claims["jti"], str),
                project=_typed(claims["prj"], str),
                user=_typed(claims["sub"], str) if "sub" in claims else None,
                uses=_typed(claims["uses"], int),
                expire_time=_typed(claims["exp"], int),
                new_session_expire_time=_typed(claims["new_session_exp"], int),
                # Canonical again: a token minted before locks were kept canonical may spell
                # a field the other way.
                forced_setup=canonical_setup_fields(
                    _typed(claims.get("setup", {}), dict), "setup claim"
                ),
                user_issuer=_typed(claims["uis"], str) if "uis" in claims else None,
            )
        except (KeyError, TypeError, ValueError):
            raise AuthFailure.unauthenticated(
                "invalid", "the session token's claims are not understood by this relay"
            ) from None


def _typed(value: object, kind: type[T]) -> T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(kind.__name__)
    return value
