"""The authenticator: from a request (HTTP or WebSocket handshake) to a `Principal`, or a refusal.

Order of checks, cheapest and most informative first: find exactly one credential; verify it
(401 if it does not verify); the project must be enabled, the `Origin` (when sent) on its list,
and its App Check token valid when it requires one (403 / 401); only then is a session-token use
counted, so a refused request never spends one. Nothing here touches the upstream or a quota.
"""

from __future__ import annotations

import dataclasses
import re
import time

from starlette.requests import HTTPConnection

from app.auth.credentials import RELAY_SUBPROTOCOL, find_credentials
from app.auth.firebase import AppCheckVerifier, FirebaseIdTokenVerifier
from app.auth.jwt_tokens import IssuerTokenVerifier, read_unverified
from app.auth.key_sets import FetchPolicy
from app.auth.keys import hash_api_key, is_api_key
from app.auth.principal import AuthFailure, Principal
from app.auth.projects import FIREBASE_ISSUER_PREFIX, ProjectRegistry
from app.auth.session_tokens import SESSION_TOKEN_ISSUER, SessionGrant, SessionTokens
from app.quota.types import QuotaStore, QuotaStoreError
from app.settings import Settings

__all__ = ["RELAY_SUBPROTOCOL", "RESUME_QUERY", "Authenticator"]

# `?resume=1`: the connection resumes a session (its setup carries a resumption handle), so a
# session token spends no use on it and may be past its newSessionExpireTime.
RESUME_QUERY = "resume"

# An origin as browsers send it. Only such a value is quoted back in a refusal: anything else in
# the header (a misplaced credential, say) is never echoed.
_WELL_FORMED_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]{1,200}(:[0-9]{1,5})?")


class Authenticator:
    """Checks credentials against the projects in `registry`; counts session-token uses in
    `store`. `fetch` governs how signing keys are fetched (tests shorten the intervals)."""

    def __init__(
        self,
        registry: ProjectRegistry,
        settings: Settings,
        store: QuotaStore,
        *,
        fetch: FetchPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.session_tokens = SessionTokens.from_settings(settings)
        self._store = store
        leeway = settings.jwt_leeway_seconds
        fetch = fetch or FetchPolicy()
        self._issuer_tokens = IssuerTokenVerifier(leeway_seconds=leeway, fetch=fetch)
        self._firebase = FirebaseIdTokenVerifier(
            settings.firebase_certs_url, leeway_seconds=leeway, fetch=fetch
        )
        self._app_check = AppCheckVerifier(
            settings.appcheck_jwks_url, leeway_seconds=leeway, fetch=fetch
        )

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        """The principal starting a session over `conn`; a session token loses one use, unless
        the connection says it resumes a session (`?resume=1`)."""
        resume = conn.query_params.get(RESUME_QUERY) == "1"
        principal, grant = await self._identify(conn, resume=resume)
        if grant is None:
            return principal
        if resume:
            return dataclasses.replace(principal, resume_only=True)
        await self._consume_use(grant)
        return principal

    async def authenticate_token_request(self, conn: HTTPConnection) -> Principal:
        """The principal asking to mint a session token (`POST /v1/tokens`)."""
        principal, grant = await self._identify(conn)
        if grant is not None:
            raise AuthFailure.forbidden(
                "not_allowed",
                "a session token cannot mint session tokens: use an API key or a JWT",
            )
        return principal

    async def aclose(self) -> None:
        """Release what the authenticator holds. Today nothing stays open between requests
        (key fetches are one-shot requests in threads); the relay's lifespan calls this so
        that stays true when a pooled client is introduced."""

    async def _identify(
        self, conn: HTTPConnection, *, resume: bool = False
    ) -> tuple[Principal, SessionGrant | None]:
        presented = find_credentials(conn)
        principal, grant = await self._verify(presented.credential, resume=resume)
        project = principal.project
        if not project.enabled:
            raise AuthFailure.forbidden("disabled", f'project "{project.name}" is disabled')
        origin = conn.headers.get("origin")
        if origin is not None and not project.allows_origin(origin):
            shown = f'"{origin}"' if _WELL_FORMED_ORIGIN.fullmatch(origin) else "(malformed)"
            raise AuthFailure.forbidden(
                "origin",
                f'origin {shown} is not allowed for project "{project.name}": '
                "add it to the project's allowed_origins",
            )
        if project.app_check is not None:
            await self._app_check.verify(presented.app_check, project.app_check)
        return principal, grant

    async def _verify(
        self, credential: str, *, resume: bool
    ) -> tuple[Principal, SessionGrant | None]:
        if is_api_key(credential):
            project = self.registry.for_api_key(credential)
            if project is None:
                raise AuthFailure.unauthenticated("invalid", "the API key is not recognised")
            return Principal(
                project=project, user=None, method="api_key", credential_id=hash_api_key(credential)
            ), None
        unverified = read_unverified(credential)
        issuer = unverified.issuer
        if issuer is None:
            raise AuthFailure.unauthenticated("invalid", 'the JWT has no "iss" (issuer) claim')
        if issuer == SESSION_TOKEN_ISSUER:
            return self._session_token(credential, resume=resume)
        if issuer.startswith(FIREBASE_ISSUER_PREFIX):
            firebase_project = issuer.removeprefix(FIREBASE_ISSUER_PREFIX)
            project = self.registry.for_firebase_project(firebase_project)
            if project is None:
                raise AuthFailure.unauthenticated(
                    "unknown_issuer", "no project accepts ID tokens of this Firebase project"
                )
            user = await self._firebase.verify(credential, unverified, firebase_project)
            return Principal(project=project, user=user, method="firebase", issuer=issuer), None
        found = self.registry.for_issuer(issuer)
        if found is None:
            raise AuthFailure.unauthenticated(
                "unknown_issuer", "no project accepts tokens from the JWT's issuer"
            )
        project, jwt_issuer = found
        user = await self._issuer_tokens.verify(credential, unverified, jwt_issuer)
        return Principal(project=project, user=user, method="jwt", issuer=issuer), None

    def _session_token(self, credential: str, *, resume: bool) -> tuple[Principal, SessionGrant]:
        grant = self.session_tokens.read(credential)
        project = self.registry.get(grant.project)
        if project is None:
            raise AuthFailure.unauthenticated(
                "invalid", "the session token's project no longer exists"
            )
        now = time.time()
        if now >= grant.expire_time:
            raise AuthFailure.forbidden("expired", "the session token has expired")
        if now >= grant.new_session_expire_time and not resume:
            raise AuthFailure.forbidden(
                "expired",
                "the session token can no longer start sessions (newSessionExpireTime passed)",
            )
        principal = Principal(
            project=project,
            user=grant.user,
            method="session_token",
            forced_setup=grant.forced_setup,
            expires_at=grant.expire_time,
            issuer=grant.user_issuer,
            credential_id=grant.token_id,
        )
        return principal, grant

    async def _consume_use(self, grant: SessionGrant) -> None:
        try:
            left = await self._store.consume_use(grant.use_key, grant.uses, grant.expire_time)
        except QuotaStoreError:
            # Fail closed whatever RELAY_QUOTA_FAIL_OPEN says: an uncounted use is a replayable
            # token, not a lenient quota.
            raise AuthFailure.unavailable(
                "store_unavailable", "the relay cannot count session-token uses now; retry later"
            ) from None
        if left is None:
            raise AuthFailure.forbidden(
                "used_up", "the session token has started all the sessions it allows"
            )
