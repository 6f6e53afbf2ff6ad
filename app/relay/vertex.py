"""Vertex AI upstream: the endpoint URL and OAuth2 access tokens from google-auth."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
from google.oauth2 import service_account

from app.relay.setup_policy import UpstreamTarget
from app.relay.upstream import UpstreamConnector, UpstreamUnavailable, live_url
from app.settings import Settings

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

logger = logging.getLogger(__name__)


def vertex_host(location: str) -> str:
    if location == "global":
        return "wss://aiplatform.googleapis.com"
    return f"wss://{location}-aiplatform.googleapis.com"


class GoogleTokenSource:
    """Bearer headers from google-auth credentials, shared by every session of the process.

    google-auth refreshes synchronously over HTTP, so a refresh runs in a thread; one lock makes
    concurrent sessions wait for a single refresh instead of each starting its own.
    """

    def __init__(
        self, credentials: google.auth.credentials.Credentials, refresh_margin_seconds: float
    ) -> None:
        self._credentials = credentials
        self._margin = dt.timedelta(seconds=refresh_margin_seconds)
        self._lock = asyncio.Lock()
        self._request = google.auth.transport.requests.Request()

    def _fresh(self) -> bool:
        credentials = self._credentials
        if not credentials.token:
            return False
        expiry: dt.datetime | None = credentials.expiry  # naive UTC, as google-auth keeps it
        if expiry is None:
            return True
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return bool(expiry - now > self._margin)

    async def headers(self) -> Mapping[str, str]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._refresh()
        headers = {"Authorization": f"Bearer {self._credentials.token}"}
        quota_project = getattr(self._credentials, "quota_project_id", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    async def _refresh(self) -> None:
        try:
            await asyncio.to_thread(self._credentials.refresh, self._request)
        except google.auth.exceptions.GoogleAuthError as exc:
            # The exception text may quote the token endpoint's answer: log its type only.
            logger.error("upstream credentials could not be refreshed: %s", type(exc).__name__)  # noqa: TRY400
            raise UpstreamUnavailable("upstream credentials unusable") from None


def load_credentials(settings: Settings) -> tuple[google.auth.credentials.Credentials, str | None]:
    """The credentials file when configured, else Application Default Credentials.

    A file is loaded by its declared type with that type's own loader (google-auth deprecates
    its generic loader, which trusts whatever the file says); anything else goes through ADC
    (`GOOGLE_APPLICATION_CREDENTIALS`), which handles every credential type.
    """
    path = settings.vertex_credentials_file
    if path is None:
        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials, project
    kind = json.loads(path.read_text()).get("type")
    if kind == "service_account":
        account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(path), scopes=[CLOUD_PLATFORM_SCOPE]
        )
        return account, account.project_id
    if kind == "authorized_user":
        user = google.oauth2.credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
            str(path), scopes=[CLOUD_PLATFORM_SCOPE]
        )
        return user, None
    raise ValueError(
        f"RELAY_VERTEX_CREDENTIALS_FILE: unsupported credential type {kind!r} "
        "(use a service_account or authorized_user file, or GOOGLE_APPLICATION_CREDENTIALS)"
    )


def vertex_connector(settings: Settings) -> tuple[UpstreamConnector, GoogleTokenSource]:
    credentials, credentials_project = load_credentials(settings)
    project = settings.vertex_project or credentials_project
    if not project:
        raise ValueError("RELAY_VERTEX_PROJECT is required: the credentials name no project")
    tokens = GoogleTokenSource(credentials, settings.token_refresh_margin_seconds)
    base = settings.vertex_base_url or vertex_host(settings.vertex_location)
    connector = UpstreamConnector(
        url=live_url(base, settings.vertex_api_version),
        target=UpstreamTarget(project=project, location=settings.vertex_location),
        settings=settings,
        headers=tokens.headers,
    )
    return connector, tokens
