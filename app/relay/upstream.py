"""The upstream leg: a WebSocket to the Live API, Vertex AI or the emulator alike.

The session code only sees a `websockets` client connection. What differs between Vertex and the
emulator (the URL, the TLS context, the bearer token) lives in `UpstreamConnector`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from app.relay.setup_policy import UpstreamTarget
from app.settings import Settings

LIVE_PATH = "/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"

HeaderSource = Callable[[], Awaitable[Mapping[str, str]]]


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or refused the handshake. The message is client-safe."""


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


class UpstreamConnector:
    """Opens upstream connections with the settings every session shares."""

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
        self._ssl = ssl_context if url.startswith("wss://") else None
        # The proxy (HTTPS_PROXY, NO_PROXY, ...) is looked up once: `websockets` would scan the
        # environment on every connect, a measured 4 % of the CPU a connection storm costs.
        self._proxy = get_proxy(parse_uri(url))

    async def connect(self) -> ClientConnection:
        settings = self._settings
        try:
            headers = await self._headers()
            async with asyncio.timeout(settings.upstream_connect_timeout_seconds):
                return await connect(
                    self.url,
                    additional_headers=dict(headers),
                    ssl=self._ssl,
                    # Audio does not compress; deflate would cost CPU and memory per frame.
                    compression="deflate" if settings.upstream_permessage_deflate else None,
                    ping_interval=settings.upstream_ping_interval_seconds,
                    # The real service answers pings slowly (seconds, not milliseconds).
                    ping_timeout=settings.upstream_ping_timeout_seconds,
                    # The service keeps its frames under 1 MiB; client frames are bounded by us.
                    max_size=None,
                    close_timeout=2,
                    open_timeout=None,  # bounded by the asyncio.timeout above
                    user_agent_header="live-relay",
                    proxy=self._proxy,
                )
        except TimeoutError:
            raise UpstreamUnavailable("upstream unavailable: connect timed out") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise UpstreamUnavailable(f"upstream refused the connection: HTTP {status}") from None
        except (OSError, WebSocketException) as exc:
            raise UpstreamUnavailable(f"upstream unavailable: {type(exc).__name__}") from None
