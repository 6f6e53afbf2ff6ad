"""Vertex AI upstream: the endpoint URL, its TLS trust, and OAuth2 access tokens from google-auth.

Credentials come from `RELAY_VERTEX_CREDENTIALS_FILE` when set (a service-account key or an
`authorized_user` ADC file), else from Application Default Credentials: the
`GOOGLE_APPLICATION_CREDENTIALS` file, gcloud's ADC file, or the metadata server (Cloud Run,
GKE Workload Identity, GCE). Problems a file or setting can show before any network call raise
`SettingsError` naming the setting (see `check_vertex_settings`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import ssl
from collections.abc import Mapping
from pathlib import Path

import google.auth
import google.auth.compute_engine
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
from google.oauth2 import service_account

from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream import UpstreamConnector, UpstreamUnavailable, live_url
from app.settings import Settings, SettingsError

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

# Credential file types RELAY_VERTEX_CREDENTIALS_FILE accepts, each loaded by its own loader.
FILE_KINDS = ("service_account", "authorized_user")

# Background token refresh: after a failure, retry after 1 s, doubling up to 60 s; a token
# with no expiry is looked at hourly; never refresh more often than once a second.
TOKEN_RETRY_SECONDS = (1.0, 60.0)
TOKEN_RECHECK_SECONDS = 3600.0
MIN_REFRESH_INTERVAL_SECONDS = 1.0

logger = logging.getLogger(__name__)


def vertex_host(location: str) -> str:
    if location == "global":
        return "wss://aiplatform.googleapis.com"
    return f"wss://{location}-aiplatform.googleapis.com"


def vertex_url(settings: Settings) -> str:
    """The Live endpoint the relay connects to: the override, else the location's host."""
    base = settings.vertex_base_url or vertex_host(settings.vertex_location)
    return live_url(base, settings.vertex_api_version)


def vertex_ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifying TLS: trust `RELAY_VERTEX_CA_FILE` alone when set, else the system's CAs."""
    path = settings.vertex_ca_file
    if path is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"RELAY_VERTEX_CA_FILE: cannot use {path}: {detail}") from None


def credentials_file_kind(path: Path) -> str:
    """The `type` of a credentials JSON file, one of `FILE_KINDS`; SettingsError otherwise."""
    setting = "RELAY_VERTEX_CREDENTIALS_FILE"
    try:
        info = json.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise SettingsError(f"{setting}: {path} is not a JSON credentials file") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in FILE_KINDS:
        raise SettingsError(
            f"{setting}: {path} has credential type {kind!r}; use a service_account or "
            "authorized_user file, or leave it unset for Application Default Credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS, the metadata server)"
        )
    return str(kind)


def check_vertex_settings(settings: Settings) -> None:
    """What can be checked without the network: the CA file and the credentials file."""
    vertex_ssl_context(settings)
    if settings.vertex_credentials_file is not None:
        credentials_file_kind(settings.vertex_credentials_file)


def load_credentials(settings: Settings) -> tuple[google.auth.credentials.Credentials, str | None]:
    """The credentials file when configured, else Application Default Credentials.

    A file is loaded by its declared type with that type's own loader (google-auth deprecates
    its generic loader, which trusts whatever the file says). Raises google-auth's
    `DefaultCredentialsError` when ADC finds nothing.
    """
    path = settings.vertex_credentials_file
    if path is None:
        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials, project
    if credentials_file_kind(path) == "service_account":
        account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(path), scopes=[CLOUD_PLATFORM_SCOPE]
        )
        return account, account.project_id
    user = google.oauth2.credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
        str(path), scopes=[CLOUD_PLATFORM_SCOPE]
    )
    return user, None


def describe_credentials(credentials: google.auth.credentials.Credentials) -> str:
    """Which kind of credentials these are, in an operator's words."""
    if isinstance(credentials, service_account.Credentials):
        return f"service account {credentials.service_account_email}"
    if isinstance(credentials, google.oauth2.credentials.Credentials):
        return "authorized user (gcloud auth application-default login)"
    if isinstance(credentials, google.auth.compute_engine.Credentials):
        return "metadata server (Cloud Run, GKE Workload Identity or GCE)"
    return type(credentials).__module__ + "." + type(credentials).__name__


class GoogleTokenSource:
    """Bearer headers from google-auth credentials, shared by every session of the process.

    `keep_fresh()` refreshes the token in the background once it is within the refresh margin
    of its expiry, so no session waits for Google's token endpoint: with refreshes on demand,
    every session opening while the token was stale waited for one HTTP round trip, and a storm
    right after start-up waited for the first token. `headers()` still refreshes on demand
    when the token is not fresh (the background refresh failed, or has not run yet).
    google-auth refreshes synchronously over HTTP, so a refresh runs in a thread; one lock makes
    concurrent callers wait for a single refresh instead of each starting its own.
    """

    def __init__(
        self, credentials: google.auth.credentials.Credentials, refresh_margin_seconds: float
    ) -> None:
        self._credentials = credentials
        self._margin = dt.timedelta(seconds=refresh_margin_seconds)
        self._lock = asyncio.Lock()
        self._request = google.auth.transport.requests.Request()

    def _seconds_until_stale(self) -> float:
        """Until the token enters the refresh margin (0: stale now); inf without an expiry."""
        credentials = self._credentials
        if not credentials.token:
            return 0.0
        expiry: dt.datetime | None = credentials.expiry  # naive UTC, as google-auth keeps it
        if expiry is None:
            return math.inf
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return max(0.0, (expiry - now - self._margin).total_seconds())

    def _fresh(self) -> bool:
        return self._seconds_until_stale() > 0

    async def headers(self) -> Mapping[str, str]:
        if not self._fresh():
            await self._refresh_if_stale()
        headers = {"Authorization": f"Bearer {self._credentials.token}"}
        quota_project = getattr(self._credentials, "quota_project_id", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    async def keep_fresh(self) -> None:
        """Refresh ahead of need, forever: run it as a task for the life of the process.

        Failures are logged by `_refresh` and retried with a doubling delay; a token with no
        expiry is looked at again every `TOKEN_RECHECK_SECONDS`.
        """
        retry = TOKEN_RETRY_SECONDS[0]
        while True:
            try:
                await self._refresh_if_stale()
            except UpstreamUnavailable:
                await asyncio.sleep(retry)
                retry = min(retry * 2, TOKEN_RETRY_SECONDS[1])
                continue
            retry = TOKEN_RETRY_SECONDS[0]
            wait = self._seconds_until_stale()
            # A margin longer than the token's life would refresh in a loop: pace it.
            await asyncio.sleep(min(max(wait, MIN_REFRESH_INTERVAL_SECONDS), TOKEN_RECHECK_SECONDS))

    async def _refresh_if_stale(self) -> None:
        async with self._lock:
            if not self._fresh():
                await self._refresh()

    async def _refresh(self) -> None:
        try:
            await asyncio.to_thread(self._credentials.refresh, self._request)
        except google.auth.exceptions.GoogleAuthError as exc:
            # The exception text may quote the token endpoint's answer: log its type only.
            logger.error("upstream credentials could not be refreshed: %s", type(exc).__name__)  # noqa: TRY400
            unusable = UpstreamUnavailable("upstream credentials unusable", cause="credentials")
            raise unusable from None


def vertex_connector(settings: Settings) -> tuple[UpstreamConnector, GoogleTokenSource]:
    ssl_context = vertex_ssl_context(settings)
    credentials, credentials_project = load_credentials(settings)
    project = settings.vertex_project or credentials_project
    if not project:
        raise SettingsError("RELAY_VERTEX_PROJECT is required: the credentials name no project")
    logger.info(
        "Vertex AI credentials: %s; project %s, location %s",
        describe_credentials(credentials),
        project,
        settings.vertex_location,
    )
    tokens = GoogleTokenSource(credentials, settings.token_refresh_margin_seconds)
    connector = UpstreamConnector(
        url=vertex_url(settings),
        target=UpstreamTarget(project=project, location=settings.vertex_location),
        settings=settings,
        headers=tokens.headers,
        ssl_context=ssl_context,
    )
    return connector, tokens
