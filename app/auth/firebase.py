"""Firebase: ID tokens (a user signed in with Firebase Auth) and App Check tokens (a genuine
app instance), each checked against keys Google publishes.

ID tokens are verified by google-auth against Google's X.509 certificates; the certificates are
fetched and cached here (google-auth would fetch them on every call, and synchronously).
App Check tokens are RS256 JWTs checked with PyJWT against the App Check JWKS.
Both key URLs come from settings, so tests can serve them from a local server.
"""

from __future__ import annotations

import math
import time

import google.auth.exceptions
import google.auth.jwt
import jwt

from app.auth.jwt_tokens import UnverifiedJwt, verify_jwt
from app.auth.key_sets import (
    FetchPolicy,
    KeySetCache,
    KeysUnavailable,
    parse_jwks,
    parse_x509_certificates,
)
from app.auth.principal import AuthFailure
from app.auth.projects import FIREBASE_ISSUER_PREFIX, AppCheckPolicy

APP_CHECK_ISSUER_PREFIX = "https://firebaseappcheck.googleapis.com/"
_MAX_UID_LENGTH = 128  # Firebase Auth's own limit on a user id


class FirebaseIdTokenVerifier:
    """Verifies Firebase ID tokens (issuer `https://securetoken.google.com/<project>`)."""

    def __init__(self, certs_url: str, *, leeway_seconds: float, fetch: FetchPolicy) -> None:
        self._certificates = KeySetCache(certs_url, parse_x509_certificates, fetch)
        self._leeway_seconds = leeway_seconds

    async def verify(self, token: str, unverified: UnverifiedJwt, firebase_project: str) -> str:
        """The Firebase user id (`sub`) of a valid ID token for `firebase_project`."""
        if unverified.header.get("alg") != "RS256" or unverified.kid is None:
            raise AuthFailure.unauthenticated(
                "invalid", "a Firebase ID token is RS256-signed and names its key (kid)"
            )
        try:
            certificate = await self._certificates.get(unverified.kid)
        except KeysUnavailable:
            raise AuthFailure.unavailable(
                "keys_unavailable", "Firebase signing certificates cannot be fetched; retry later"
            ) from None
        if certificate is None:
            raise AuthFailure.unauthenticated(
                "invalid", "the ID token is signed with a key Firebase does not publish"
            )
        expires = unverified.claims.get("exp")
        if isinstance(expires, int | float) and expires + self._leeway_seconds < time.time():
            raise AuthFailure.unauthenticated("expired", "the Firebase ID token has expired")
        try:
            # Signature, iat and exp (with leeway) and audience; a CPU-only check of one
            # signature, cheap enough to run on the event loop.
            claims = google.auth.jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs={unverified.kid: certificate},
                audience=firebase_project,
                clock_skew_in_seconds=math.ceil(self._leeway_seconds),
            )
        except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError):
            raise AuthFailure.unauthenticated(
                "invalid", "the Firebase ID token does not verify"
            ) from None
        if claims.get("iss") != FIREBASE_ISSUER_PREFIX + firebase_project:
            raise AuthFailure.unauthenticated("invalid", "the ID token's issuer does not match")
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, int | float) or auth_time > time.time() + self._leeway_seconds:
            raise AuthFailure.unauthenticated("invalid", "the ID token's auth_time is not valid")
        user = claims.get("sub")
        if not isinstance(user, str) or not 0 < len(user) <= _MAX_UID_LENGTH:
            raise AuthFailure.unauthenticated("invalid", "the ID token's sub is not a user id")
        return user


class AppCheckVerifier:
    """Verifies Firebase App Check tokens against the App Check JWKS."""

    def __init__(self, jwks_url: str, *, leeway_seconds: float, fetch: FetchPolicy) -> None:
        self._keys = KeySetCache(jwks_url, parse_jwks("RS256"), fetch)
        self._leeway_seconds = leeway_seconds

    async def verify(self, token: str | None, policy: AppCheckPolicy) -> None:
        """Return when `token` is a valid App Check token for the policy; AuthFailure if not."""
        if token is None:
            raise AuthFailure.unauthenticated(
                "app_check",
                "this project requires a Firebase App Check token: send the "
                "X-Firebase-AppCheck header or ?app_check=",
            )
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AuthFailure.unauthenticated(
                "app_check", "the App Check token is not a JWT"
            ) from None
        try:
            key = await self._keys.get(kid if isinstance(kid, str) else None)
        except KeysUnavailable:
            raise AuthFailure.unavailable(
                "keys_unavailable", "App Check signing keys cannot be fetched; retry later"
            ) from None
        if key is None:
            raise AuthFailure.unauthenticated(
                "app_check", "the App Check token is signed with an unknown key"
            )
        try:
            claims = verify_jwt(
                token,
                key,
                algorithm="RS256",
                audience=f"projects/{policy.project_number}",
                issuer=APP_CHECK_ISSUER_PREFIX + policy.project_number,
                leeway_seconds=self._leeway_seconds,
            )
        except AuthFailure as failure:
            if failure.status_code != 401:
                raise
            raise AuthFailure.unauthenticated(
                "app_check", f"App Check token refused: {failure.message}"
            ) from None
        if policy.app_ids and claims["sub"] not in policy.app_ids:
            raise AuthFailure.forbidden(
                "app_check", "the App Check token belongs to an app this project does not allow"
            )
