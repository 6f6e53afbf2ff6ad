"""The upstream leg: a WebSocket to the Live API, Vertex AI or the emulator alike.

The session code only sees an `UpstreamConnection` (send, recv, close, state). What differs
between Vertex and the emulator (the URL, the TLS context, the bearer token) lives in
`UpstreamConnector`. A connection is a `LeanConnection` (the `websockets` sans-I/O protocol on
an asyncio Protocol, less memory and CPU per session than its asyncio client), directly or
through the egress proxy `HTTPS_PROXY` names.

A connection that cannot be opened raises `UpstreamUnavailable`, whose `cause` is one word from
`FAILURE_CAUSES` (a metric label) and whose message is safe to send the client as a close reason.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping

from websockets.exceptions import (
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    ProxyError,
    WebSocketException,
)
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from app.relay.upstream.lean_upstream import LeanConnection
from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream_leg import UpstreamConnection
from app.settings import Settings

LIVE_PATH = "/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"

HeaderSource = Callable[[], Awaitable[Mapping[str, str]]]

# Seconds the upstream gets to answer a close before the connection is dropped.
CLOSE_TIMEOUT = 2.0
USER_AGENT = "live-relay"

# Why an upstream connection could not be opened; each is a value of the `cause` label.
FAILURE_CAUSES = (
    "credentials",  # no access token could be obtained
    "timeout",  # TCP + TLS + WebSocket handshake did not finish in time
    "dns",  # the host name does not resolve
    "refused",  # nothing listens (TCP RST)
    "network",  # any other socket error (unreachable, reset)
    "tls_certificate",  # the server's certificate failed verification
    "tls",  # any other TLS failure (protocol, handshake alert)
    "http_status",  # the upgrade was answered with an HTTP status (401, 403, 429, 5xx)
    "handshake",  # the upgrade answer was not a valid WebSocket handshake
    "proxy",  # the egress proxy (HTTPS_PROXY) refused the tunnel or did not answer in HTTP
    "setup_timeout",  # connected, but setupComplete never came (counted at the session's end)
)


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or refused the handshake. The message is client-safe.

    `cause` is one of `FAILURE_CAUSES`; `status` is the HTTP status of an `http_status` refusal.
    """

    def __init__(self, message: str, *, cause: str, status: int | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.status = status


async def no_headers() -> Mapping[str, str]:
    return {}


def live_url(base_url: str, api_version: str) -> str:
    """`wss://host[:port]` (or ws://, https://) + the Live API path of `api_version`."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + LIVE_PATH.format(version=api_version)


def connect_failure(exc: BaseException) -> UpstreamUnavailable:
    """The `UpstreamUnavailable` for an exception raised while opening the connection."""
    # Order matters: certificate errors are SSLErrors, SSLErrors and gaierrors are OSErrors.
    if isinstance(exc, TimeoutError):
        return UpstreamUnavailable("upstream unavailable: connect timed out", cause="timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f" ({exc.verify_message})" if exc.verify_message else ""
        return UpstreamUnavailable(
            f"upstream unavailable: certificate verify failed{detail}", cause="tls_certificate"
        )
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or type(exc).__name__  # set by OpenSSL errors
        return UpstreamUnavailable(f"upstream unavailable: TLS failed ({reason})", cause="tls")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return UpstreamUnavailable(
            f"upstream refused the connection: HTTP {status}", cause="http_status", status=status
        )
    if isinstance(exc, InvalidProxyStatus):
        status = exc.response.status_code
        return UpstreamUnavailable(
            f"upstream unavailable: the egress proxy refused the tunnel: HTTP {status}",
            cause="proxy",
        )
    if isinstance(exc, InvalidProxyMessage):
        return UpstreamUnavailable(
            "upstream unavailable: the egress proxy did not answer in HTTP", cause="proxy"
        )
    if isinstance(exc, ProxyError):
        return UpstreamUnavailable(f"upstream unavailable: egress proxy: {exc}", cause="proxy")
    if isinstance(exc, socket.gaierror):
        return UpstreamUnavailable("upstream unavailable: host name not resolved", cause="dns")
    if isinstance(exc, ConnectionRefusedError):
        return UpstreamUnavailable("upstream unavailable: connection refused", cause="refused")
    if isinstance(exc, OSError):
        return UpstreamUnavailable(
            f"upstream unavailable: network error ({type(exc).__name__})", cause="network"
        )
    return UpstreamUnavailable(
        f"upstream unavailable: bad handshake ({type(exc).__name__})", cause="handshake"
    )


class UpstreamConnector:
    """Opens upstream connections with the settings every session shares.

    A `wss://` URL is always verified: against `ssl_context` when given (a private CA), else
    against the system's trusted CAs. There is no way to turn verification off.
    """

    def __init__(
        self,
        *,
        url: str,
        target: UpstreamTarget,
        settings: Settings,
        headers: HeaderSource = no_headers,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.target = target
        self._headers = headers
        self._settings = settings
        self._ssl: ssl.SSLContext | None = None
        if url.startswith("wss://"):
            self._ssl = ssl_context or ssl.create_default_context()
        # The proxy (HTTPS_PROXY, NO_PROXY, ...) is looked up once: `websockets` would scan the
        # environment on every connect, a measured 4 % of the CPU a connection storm costs.
        self._proxy = get_proxy(parse_uri(url))

    async def connect(self) -> UpstreamConnection:
        settings = self._settings
        deadline = settings.upstream_connect_timeout_seconds
        try:
            # A token endpoint that hangs must not hold the session longer than a handshake.
            async with asyncio.timeout(deadline):
                headers = await self._headers()
        except TimeoutError:
            raise UpstreamUnavailable(
                f"upstream credentials unusable: no access token within {deadline:g}s",
                cause="credentials",
            ) from None
        try:
            async with asyncio.timeout(deadline):
                return await self._connect_lean(headers)
        except (TimeoutError, OSError, WebSocketException) as exc:
            raise connect_failure(exc) from None

    async def _connect_lean(self, headers: Mapping[str, str]) -> LeanConnection:
        settings = self._settings
        return await LeanConnection.open(
            self.url,
            headers=headers,
            ssl_context=self._ssl,
            # Audio does not compress; deflate would cost CPU and memory per frame.
            compression=settings.upstream_permessage_deflate,
            ping_interval=settings.upstream_ping_interval_seconds,
            # The real service answers pings slowly (seconds, not milliseconds).
            ping_timeout=settings.upstream_ping_timeout_seconds,
            close_timeout=CLOSE_TIMEOUT,
            # The service keeps its frames under 1 MiB; client frames are bounded by us.
            max_size=None,
            user_agent=USER_AGENT,
            proxy=self._proxy,
        )
