"""The upstream connector reads the proxy settings (HTTP_PROXY, NO_PROXY, ...) once, when the
relay starts, not on every connection."""

from __future__ import annotations

import pytest

from app.emulator import Emulator
from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream import UpstreamConnector, UpstreamUnavailable, live_url
from tests.relay.conftest import relay_settings
from tests.support.net import free_port

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _connector(emulator: Emulator) -> UpstreamConnector:
    settings = relay_settings(emulator, None, upstream_connect_timeout_seconds=5)
    return UpstreamConnector(
        url=live_url(emulator.base_url, settings.vertex_api_version),
        target=UpstreamTarget("p", "l"),
        settings=settings,
    )


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_a_proxy_set_at_start_is_used(
    emulator: Emulator, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens: connecting through fails
    no_proxy_environment.setenv("http_proxy", dead_proxy)
    connector = _connector(emulator)
    no_proxy_environment.delenv("http_proxy")
    with pytest.raises(UpstreamUnavailable):
        await connector.connect()


async def test_a_proxy_set_after_start_is_not(
    emulator: Emulator, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    connector = _connector(emulator)
    no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    upstream = await connector.connect()
    await upstream.close()
