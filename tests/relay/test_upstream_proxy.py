"""The upstream connector reads the proxy settings (HTTP_PROXY, NO_PROXY, ...) once, when the
relay starts, not on every connection, and tunnels through the proxy they name with the same
lean connection (and fast lane) as without one."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest

from app.emulator import Emulator
from app.relay.upstream.lean_upstream import LeanConnection
from app.relay.upstream.target import UpstreamTarget
from app.relay.upstream.upstream import UpstreamConnector, UpstreamUnavailable, live_url
from tests.relay.conftest import MODEL, relay_settings
from tests.support.net import free_port
from tests.support.tcp_proxy import ConnectProxy
from tests.support.tls import TLSFiles

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


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http_proxy", "https_proxy"])
async def test_a_connection_tunnels_through_the_proxy_and_keeps_the_lean_leg(
    emulator: Emulator,
    no_proxy_environment: pytest.MonkeyPatch,
    tls_files: TLSFiles,
    proxy_tls: bool,
) -> None:
    proxy = ConnectProxy(tls=tls_files.server_context() if proxy_tls else None)
    await proxy.start()
    try:
        # An https:// proxy is verified against the system's CAs, which OpenSSL reads from
        # SSL_CERT_FILE when it is set: the test CA here (without it: certificate verify failed).
        no_proxy_environment.setenv("SSL_CERT_FILE", str(tls_files.ca_file))
        no_proxy_environment.setenv("http_proxy", proxy.url)
        upstream = await _connector(emulator).connect()
        try:
            # The fast lane's leg, not the `websockets` asyncio client it once fell back to.
            assert isinstance(upstream, LeanConnection)
            model = UpstreamTarget("p", "l").model_path(MODEL)
            await upstream.send(json.dumps({"setup": {"model": model}}))
            first = await asyncio.wait_for(upstream.recv(), timeout=10)
        finally:
            await upstream.close()
    finally:
        await proxy.stop()
    assert "setupComplete" in json.loads(first)
    assert proxy.tunnels == [emulator.base_url.removeprefix("ws://")]


@pytest.mark.parametrize(
    ("refuse_with", "credentials", "userinfo", "status"),
    [(403, None, "", 403), (None, "relay:s3cret", "relay:wrong@", 407)],
    ids=["refused", "wrong_credentials"],
)
async def test_a_proxy_that_refuses_the_tunnel_is_named_as_the_cause(
    emulator: Emulator,
    no_proxy_environment: pytest.MonkeyPatch,
    refuse_with: int | None,
    credentials: str | None,
    userinfo: str,
    status: int,
) -> None:
    proxy = ConnectProxy(refuse_with=refuse_with, credentials=credentials)
    await proxy.start()
    try:
        no_proxy_environment.setenv("http_proxy", proxy.url.replace("//", f"//{userinfo}"))
        with pytest.raises(UpstreamUnavailable) as refused:
            await _connector(emulator).connect()
    finally:
        await proxy.stop()
    assert refused.value.cause == "proxy"
    assert str(refused.value) == (
        f"upstream unavailable: the egress proxy refused the tunnel: HTTP {status}"
    )


async def test_a_proxy_that_asks_for_credentials_gets_those_of_its_url(
    emulator: Emulator, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    proxy = ConnectProxy(credentials="relay:s3cret")
    await proxy.start()
    try:
        no_proxy_environment.setenv("http_proxy", proxy.url.replace("//", "//relay:s3cret@"))
        upstream = await _connector(emulator).connect()
        await upstream.close()
    finally:
        await proxy.stop()
    assert proxy.tunnels == [emulator.base_url.removeprefix("ws://")]


async def test_a_socks_proxy_is_refused_by_name(
    emulator: Emulator, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    no_proxy_environment.setenv("http_proxy", f"socks5://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamUnavailable) as refused:
        await _connector(emulator).connect()
    assert refused.value.cause == "proxy"
    assert str(refused.value) == (
        "upstream unavailable: egress proxy: socks5 proxies are not supported: use an HTTP(S) proxy"
    )


async def test_an_untrusted_endpoint_behind_the_proxy_fails_once_and_quietly(
    no_proxy_environment: pytest.MonkeyPatch,
    tls_files: TLSFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TLS to the endpoint fails inside the tunnel (no CA trusts it): the connect names the
    cause, and no error about a failure nobody read is logged after it."""
    proxy = ConnectProxy()
    await proxy.start()
    try:
        async with Emulator(ssl_context=tls_files.server_context()) as emulator:
            no_proxy_environment.setenv("https_proxy", proxy.url)
            cause = None
            try:
                await _connector(emulator).connect()
            except UpstreamUnavailable as failed:
                cause = failed.cause
            # The aborted socket's last callbacks run, the traceback is let go: an unread
            # future's exception is logged when it is collected.
            await asyncio.sleep(0.1)
            gc.collect()
    finally:
        await proxy.stop()
    assert cause == "tls_certificate"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
