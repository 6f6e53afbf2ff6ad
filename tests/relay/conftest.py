"""Relay tests: a test-owned emulator upstream, the relay in front of it, clients over sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai

from app.emulator import Emulator
from app.settings import Settings
from tests.support.relay import RunningRelay, running_relay
from tests.support.tls import TLSFiles
from tests.support.wait import eventually

API_KEY = "lr_test_" + "k" * 32
MODEL = "gemini-live-2.5-flash"


def relay_settings(emulator: Emulator, tls_files: TLSFiles | None, **overrides: Any) -> Settings:
    """Settings of a relay in front of `emulator`, serving wss:// when `tls_files` are given."""
    tls: dict[str, Any] = {}
    if tls_files is not None:
        tls = {"tls_cert_file": tls_files.cert_file, "tls_key_file": tls_files.key_file}
    values: dict[str, Any] = {
        "upstream": "emulator",
        "emulator_url": emulator.base_url,
        "api_keys": (API_KEY,),
        "token_signing_key": "test-signing-key-" + "s" * 32,
        "port": 0,
        **tls,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sdk_client(relay: RunningRelay, tls_files: TLSFiles, api_key: str = API_KEY) -> genai.Client:
    """The google-genai SDK in its API-gateway mode, pointed at the relay."""
    return genai.Client(
        vertexai=True,
        http_options={
            "base_url": relay.url,
            "headers": {"Authorization": f"Bearer {api_key}"},
            "async_client_args": {"ssl": tls_files.client_context()},
        },
    )


def auth_headers(api_key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def assert_reached_no_upstream(emulator: Emulator) -> None:
    """A refused session sent the upstream nothing and left no connection open there. (The
    relay may have opened one while the quota answered, app/relay/admission/early_connect.py:
    it must be closed unused.)"""
    assert not emulator.stats.frames_received

    async def none_open() -> bool:
        return emulator.stats.connections_open == 0

    await eventually(none_open, within=5)


def client_ssl(relay: RunningRelay, tls_files: TLSFiles) -> ssl.SSLContext | None:
    return tls_files.client_context() if relay.url.startswith("wss") else None


@pytest.fixture
async def relay(emulator: Emulator, tls_files: TLSFiles) -> AsyncIterator[RunningRelay]:
    """A wss:// relay in front of the default emulator."""
    async with running_relay(relay_settings(emulator, tls_files)) as running:
        yield running


@pytest.fixture
async def plain_relay(emulator: Emulator) -> AsyncIterator[RunningRelay]:
    """A ws:// relay in front of the default emulator, for raw-frame tests."""
    async with running_relay(relay_settings(emulator, None)) as running:
        yield running
