"""JWTs: reading one before it is trusted, verifying it with a pinned algorithm, and the JWTs
of a project's own identity providers (HS256 with a shared secret, RS256/ES256 with a JWKS).

Every failure becomes an `AuthFailure` whose message is written here: library messages can
quote the token, and a token must never reach a response or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from app.auth.key_sets import FetchPolicy, KeySetCache, KeysUnavailable, parse_jwks
from app.auth.principal import AuthFailure
from app.auth.projects import JwtIssuer

# Keys below the recommended length raise instead of warning: a short HS256 secret is refused.
_JWT = jwt.PyJWT(options={"enforce_minimum_key_length": True})


@dataclass(frozen=True)
class UnverifiedJwt:
    """A JWT's header and claims as sent: enough to choose how to verify it, nothing more."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def issuer(self) -> str | None:
        issuer = self.claims.get("iss")
        return issuer if isinstance(issuer, str) else None

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def read_unverified(token: str) -> UnverifiedJwt:
    """Header and claims of something shaped like a JWT, or AuthFailure(401)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = _JWT.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthFailure.unauthenticated(
            "malformed", "the credential is neither a relay API key nor a well-formed JWT"
        ) from None
    if not isinstance(claims, dict):
        raise AuthFailure.unauthenticated("malformed", "the JWT's payload is not a JSON object")
    return UnverifiedJwt(header=header, claims=claims)


def verify_jwt(
    token: str,
    key: jwt.PyJWK | str | bytes,
    *,
    algorithm: str,
    audience: str,
    issuer: str,
    leeway_seconds: float,
    required: tuple[str, ...] = ("exp", "iss", "aud", "sub"),
    verify_expiry: bool = True,
) -> dict[str, Any]:
    """The verified claims, or AuthFailure(401) saying which check failed.

    `verify_expiry=False` leaves `exp` to the caller (still required when listed in `required`).
    """
    try:
        claims: dict[str, Any] = _JWT.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway_seconds,
            options={"require": list(required), "verify_exp": verify_expiry},
        )
    except jwt.ExpiredSignatureError:
        raise AuthFailure.unauthenticated("expired", "the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthFailure.unauthenticated("not_yet_valid", "the token is not valid yet") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthFailure.unauthenticated(
            "invalid", f'the token lacks the "{exc.claim}" claim'
        ) from None
    except jwt.InvalidAudienceError:
        raise AuthFailure.unauthenticated(
            "invalid", "the token's audience (aud) is not the one configured for its issuer"
        ) from None
    except jwt.InvalidAlgorithmError:
        raise AuthFailure.unauthenticated(
            "invalid", f"the token must be signed with {algorithm}"
        ) from None
    except jwt.InvalidSignatureError:
        raise AuthFailure.unauthenticated(
            "invalid", "the token's signature does not verify"
        ) from None
    except jwt.PyJWTError:
        raise AuthFailure.unauthenticated("invalid", "the token does not verify") from None
    subject = claims.get("sub")
    if "sub" in required and (not isinstance(subject, str) or not subject):
        raise AuthFailure.unauthenticated("invalid", 'the token\'s "sub" claim must name the user')
    return claims


class IssuerTokenVerifier:
    """Verifies JWTs of projects' identity providers; one key cache per JWKS source."""

    def __init__(self, *, leeway_seconds: float, fetch: FetchPolicy) -> None:
        self._leeway_seconds = leeway_seconds
        self._fetch = fetch
        self._key_sets: dict[tuple[str, str], KeySetCache[jwt.PyJWK]] = {}

    async def verify(self, token: str, unverified: UnverifiedJwt, issuer: JwtIssuer) -> str:
        """The verified `sub` of `token`, issued by `issuer`; AuthFailure otherwise."""
        key: jwt.PyJWK | bytes
        if issuer.secret is not None:
            key = issuer.secret.get_secret_value().encode()
        else:
            key = await self._public_key(unverified.kid, issuer)
        claims = verify_jwt(
            token,
            key,
            algorithm=issuer.algorithm,
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway_seconds=self._leeway_seconds,
        )
        return str(claims["sub"])

    async def _public_key(self, kid: str | None, issuer: JwtIssuer) -> jwt.PyJWK:
        assert issuer.jwks_source is not None  # the projects file requires one for RS/ES
        cache_key = (issuer.jwks_source, issuer.algorithm)
        key_set = self._key_sets.get(cache_key)
        if key_set is None:
            key_set = KeySetCache(issuer.jwks_source, parse_jwks(issuer.algorithm), self._fetch)
            self._key_sets[cache_key] = key_set
        try:
            key = await key_set.get(kid)
        except KeysUnavailable:
            raise AuthFailure.unavailable(
                "keys_unavailable", "the issuer's signing keys cannot be fetched; retry later"
            ) from None
        if key is None:
            raise AuthFailure.unauthenticated(
                "invalid", "the token is signed with a key its issuer does not publish"
            )
        return key
