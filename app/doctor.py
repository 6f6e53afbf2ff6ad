"""`live-relay doctor`: check, in order, everything the relay needs to reach Vertex AI.

One line per step, `ok` or `FAIL` with a fix:

1. settings parse (and pass the start-up checks `serve` runs);
2. Google credentials are found, and of which kind;
3. an access token is obtained with them;
4. the project and location are resolved (the endpoint URL follows);
5. a TLS + WebSocket handshake with the Live endpoint succeeds;
6. for each allowed model, a `setup` is answered by `setupComplete`.

Steps 1-5 each need the one before, so the first failure ends the run; every model is checked.
The exit status is 0 only when every step passed. Uses the same code paths as `serve`.

With `RELAY_UPSTREAM=emulator` it checks the emulator instead (`RELAY_EMULATOR_URL`, or the
embedded one it starts), skipping steps 2-4, which only Vertex AI needs: a way to try it
without a Google account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import google.auth.exceptions
import google.auth.transport.requests
from websockets.exceptions import ConnectionClosed

from app.emulator import Emulator, EmulatorConfig
from app.protocol.models import transcription_only
from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream import UpstreamConnector, UpstreamUnavailable, live_url
from app.relay.upstream.vertex import (
    GoogleTokenSource,
    describe_credentials,
    load_credentials,
    vertex_ssl_context,
    vertex_url,
)
from app.settings import Settings, SettingsError, load_settings
from app.startup import check_startup

CREDENTIALS_FIX = (
    "run `gcloud auth application-default login`, or set RELAY_VERTEX_CREDENTIALS_FILE (or "
    "GOOGLE_APPLICATION_CREDENTIALS) to a service-account key, or on Cloud Run / GKE attach a "
    "service account to the service or pod (Workload Identity)"
)
PROJECT_FIX = (
    "check that RELAY_VERTEX_PROJECT names a project with the Vertex AI API enabled where these "
    "credentials hold roles/aiplatform.user"
)
# The fix for each cause of a failed handshake (see app.relay.upstream.upstream.FAILURE_CAUSES).
HANDSHAKE_FIXES = {
    "timeout": "check that this host can reach the endpoint on port 443 (firewall, egress proxy)",
    "dns": "check RELAY_VERTEX_LOCATION (or RELAY_VERTEX_BASE_URL) and this host's DNS",
    "refused": "nothing listens there: check RELAY_VERTEX_BASE_URL and RELAY_VERTEX_LOCATION",
    "network": "check that this host can reach the endpoint on port 443 (firewall, egress proxy)",
    "tls_certificate": "the endpoint's certificate is not trusted: set RELAY_VERTEX_CA_FILE to "
    "the CA that signs it (private endpoint, TLS-inspecting proxy) or install the system CA "
    "bundle (ca-certificates)",
    "tls": "the TLS handshake failed: check RELAY_VERTEX_BASE_URL points at a TLS endpoint",
    "handshake": "the endpoint did not answer as a WebSocket: check RELAY_VERTEX_BASE_URL",
    "proxy": "the egress proxy refused the tunnel: check HTTPS_PROXY, its credentials "
    "(http://user:password@host:port) and that it allows CONNECT to the endpoint on port 443",
    "credentials": CREDENTIALS_FIX,
}
HTTP_FIXES = {
    401: "the access token was refused: check the credentials (step 2)",
    403: PROJECT_FIX,
    404: "no Live endpoint at this URL: check RELAY_VERTEX_LOCATION / RELAY_VERTEX_BASE_URL",
    429: "the project is over a Vertex AI quota: wait, or ask for more quota",
}


class Report:
    """Prints one line per step and remembers whether any failed."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.failed = False

    def ok(self, step: str, detail: str) -> None:
        print(f"ok    {step}: {detail}", file=self._out, flush=True)

    def fail(self, step: str, detail: str, fix: str) -> None:
        self.failed = True
        print(f"FAIL  {step}: {detail} -- fix: {fix}", file=self._out, flush=True)


@dataclass(frozen=True)
class Endpoint:
    """What steps 1-4 establish, for the handshake and setup steps."""

    settings: Settings
    connector: UpstreamConnector


# The project the relay names in front of the emulator (as app.factory does).
EMULATOR_PROJECT = "live-relay-dev"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check step by step that the relay can reach Vertex AI: settings, credentials, an "
        "access token, the project, the TLS + WebSocket handshake, then a setup per allowed "
        "model. Each failure comes with its fix."
    )
    parser.epilog = (
        "Reads the same RELAY_* settings (and .env file) as `live-relay serve`. To try it "
        "without a Google account: RELAY_UPSTREAM=emulator live-relay doctor (checks the "
        "embedded emulator, or RELAY_EMULATOR_URL)."
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(diagnose(sys.stdout))


async def diagnose(out: TextIO) -> int:
    report = Report(out)
    settings = _settings(report)
    if settings is not None and settings.upstream == "emulator":
        return await _diagnose_emulator(report, settings)
    endpoint = None if settings is None else await _prepare(report, settings)
    if endpoint is not None:
        await _check_endpoint(report, endpoint)
    return 1 if report.failed or endpoint is None else 0


async def _check_endpoint(report: Report, endpoint: Endpoint) -> None:
    """Steps 5 and 6."""
    if await _handshake(report, endpoint):
        for model in endpoint.settings.allowed_models:
            await _setup(report, endpoint, model)


def _settings(report: Report) -> Settings | None:
    """Step 1."""
    try:
        settings = load_settings()
        check_startup(settings)
    except SettingsError as exc:
        detail = str(exc).replace("\n  ", " ").replace("invalid settings:", "").strip()
        report.fail("settings", detail, "correct the settings named (`live-relay serve --help`)")
        return None
    return settings


async def _diagnose_emulator(report: Report, settings: Settings) -> int:
    """Steps 1, 5 and 6 against the emulator: no credentials, token or project to check."""
    async with contextlib.AsyncExitStack() as stack:
        base_url = settings.emulator_url
        where = f"RELAY_EMULATOR_URL {base_url}"
        if base_url is None:
            emulator = Emulator(EmulatorConfig(known_models=settings.allowed_models))
            await stack.enter_async_context(emulator)
            base_url, where = emulator.base_url, "the embedded emulator (started for this check)"
        report.ok("settings", f"upstream emulator: {where}; no Google credentials needed")
        target = UpstreamTarget(
            settings.vertex_project or EMULATOR_PROJECT, settings.vertex_location
        )
        url = live_url(base_url, settings.vertex_api_version)
        connector = UpstreamConnector(url=url, target=target, settings=settings)
        await _check_endpoint(report, Endpoint(settings, connector))
    return 1 if report.failed else 0


async def _prepare(report: Report, settings: Settings) -> Endpoint | None:
    """Steps 2-4; None after the first failure."""
    report.ok("settings", f"upstream vertex, API {settings.vertex_api_version}")

    try:
        credentials, credentials_project = await asyncio.to_thread(load_credentials, settings)
    except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
        report.fail("credentials", f"none found ({_detail(exc)})", CREDENTIALS_FIX)
        return None
    source = (
        "RELAY_VERTEX_CREDENTIALS_FILE"
        if settings.vertex_credentials_file
        else "Application Default Credentials"
    )
    report.ok("credentials", f"{describe_credentials(credentials)}, from {source}")

    try:
        await asyncio.to_thread(credentials.refresh, google.auth.transport.requests.Request())
    except google.auth.exceptions.TransportError as exc:
        # Not an answer from Google: DNS, a firewall, a proxy. The credentials may be fine.
        endpoint = _token_endpoint(credentials)
        report.fail(
            "access token",
            f"could not reach the token endpoint {endpoint} ({_detail(exc)})",
            f"check this host's DNS and that it can reach {endpoint} on port 443 (firewall, "
            "egress proxy: HTTPS_PROXY)",
        )
        return None
    except google.auth.exceptions.GoogleAuthError as exc:
        detail = f"refused ({type(exc).__name__}: {_detail(exc)})"
        report.fail(
            "access token", detail, "the credentials are revoked or wrong: " + CREDENTIALS_FIX
        )
        return None
    report.ok("access token", f"obtained, {_lifetime(credentials.expiry)}")

    project = settings.vertex_project or credentials_project
    if not project:
        report.fail(
            "project", "the credentials name no project", "set RELAY_VERTEX_PROJECT=<project id>"
        )
        return None
    target = UpstreamTarget(project=project, location=settings.vertex_location)
    tokens = GoogleTokenSource(credentials, settings.token_refresh_margin_seconds)
    url = vertex_url(settings)
    report.ok("project", f"{project}, location {settings.vertex_location}, endpoint {url}")
    connector = UpstreamConnector(
        url=url,
        target=target,
        settings=settings,
        headers=tokens.headers,
        ssl_context=vertex_ssl_context(settings),
    )
    return Endpoint(settings, connector)


async def _handshake(report: Report, endpoint: Endpoint) -> bool:
    """Step 5: TLS and the WebSocket upgrade, with the bearer token."""
    try:
        connection = await endpoint.connector.connect()
    except UpstreamUnavailable as exc:
        fix = HANDSHAKE_FIXES.get(exc.cause, "retry; if it persists, check the endpoint")
        if exc.status is not None:
            fix = HTTP_FIXES.get(exc.status, "Vertex AI answered with an error: retry later")
        report.fail("TLS + WebSocket handshake", str(exc), fix)
        return False
    await connection.close()
    tls = "TLS verified" if endpoint.connector.url.startswith("wss://") else "no TLS (insecure)"
    report.ok("TLS + WebSocket handshake", tls)
    return True


async def _setup(report: Report, endpoint: Endpoint, model: str) -> None:
    """Step 6 for one model: a setup answered by setupComplete."""
    step = f"model {model}"
    target = endpoint.connector.target
    try:
        connection = await endpoint.connector.connect()
    except UpstreamUnavailable as exc:
        report.fail(step, str(exc), "retry; the handshake succeeded a moment ago")
        return
    try:
        async with asyncio.timeout(endpoint.settings.setup_timeout_seconds):
            await connection.send(json.dumps({"setup": _probe_setup(target.model_path(model))}))
            first = await connection.recv()
    except ConnectionClosed as closed:
        received = closed.rcvd
        code, reason = (received.code, received.reason) if received else (1006, "connection lost")
        fix = f"remove {model} from RELAY_ALLOWED_MODELS, or use a location where it is offered"
        if "project" in reason.lower() or "permission" in reason.lower():
            fix = PROJECT_FIX
        report.fail(step, f"setup refused in project {target.project}: {code} {reason}", fix)
        return
    except TimeoutError:
        report.fail(step, "no answer to the setup", "retry; Vertex AI may be overloaded")
        return
    finally:
        await connection.close()
    if "setupComplete" not in (first.decode() if isinstance(first, bytes) else first):
        report.fail(step, "the first answer was not setupComplete", "report this to live-relay")
        return
    report.ok(step, "setup answered by setupComplete")


def _probe_setup(model_path: str) -> dict[str, Any]:
    """The smallest setup `model_path` accepts: a transcription-only model answers in text
    only, and refuses the AUDIO a setup without a modality means."""
    setup: dict[str, Any] = {"model": model_path}
    if transcription_only(model_path.rsplit("/", 1)[-1]):
        setup["generationConfig"] = {"responseModalities": ["TEXT"]}
    return setup


def _detail(exc: BaseException) -> str:
    """The whole message on one line: a cut one hides the part that says what is wrong."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _token_endpoint(credentials: object) -> str:
    """Where these credentials get their tokens (google-auth's default when they do not say)."""
    uri = getattr(credentials, "_token_uri", None) or getattr(credentials, "token_uri", None)
    return str(uri or "https://oauth2.googleapis.com/token")


def _lifetime(expiry: dt.datetime | None) -> str:
    if expiry is None:
        return "no expiry"
    left = expiry - dt.datetime.now(dt.UTC).replace(tzinfo=None)  # google-auth: naive UTC
    return f"valid for {max(0, round(left.total_seconds() / 60))} min"
