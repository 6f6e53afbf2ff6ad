"""Fixtures every test directory may use (TLS files, a private redis-server, a default
emulator), and the switch
behind `make test-fast`: `--no-servers` runs the suite as the inner loop needs it, skipping each
test at the moment it would start a server, a process or a browser (see docs/development.md)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.emulator import Emulator
from tests.support.redis_server import RedisServer
from tests.support.tls import TLSFiles, make_tls_files

NO_SERVERS = "--no-servers"
NO_SERVERS_REASON = f"{NO_SERVERS}: starts a server, a process or a browser (make test runs it)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        NO_SERVERS,
        action="store_true",
        help="the inner loop (make test-fast): skip every test when it binds a socket or starts "
        "a process, which is what every server, redis-server, CLI run and browser does",
    )


class _Refusal:
    """While a test runs under --no-servers, binding a socket or starting a process skips it.
    Imports may still do either (urllib3 binds ::1 to probe IPv6): collection is left alone."""

    active = False


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption(NO_SERVERS):
        return
    # A test cut short where it starts a server may leave what it opened before to the garbage
    # collector; `make test`, which runs it whole, is where such leaks are errors.
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestUnraisableExceptionWarning")
    bind = socket.socket.bind
    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def refusing_bind(self: socket.socket, address: Any) -> None:
        if _Refusal.active:
            self.close()  # callers that do not expect a failure here would leak it
            pytest.skip(NO_SERVERS_REASON)
        bind(self, address)

    def refusing_execute_child(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if _Refusal.active:
            pytest.skip(NO_SERVERS_REASON)
        execute_child(self, *args, **kwargs)

    socket.socket.bind = refusing_bind  # type: ignore[method-assign,assignment]
    subprocess.Popen._execute_child = refusing_execute_child  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test's setup, call and teardown (and the wider fixtures it sets up first) refuse
    servers under --no-servers. Nothing is asserted by name, so a new test that starts a
    server is skipped there without any marker."""
    _Refusal.active = bool(item.config.getoption(NO_SERVERS))
    try:
        return (yield)
    finally:
        _Refusal.active = False


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA and a certificate for localhost/127.0.0.1, shared by the whole run."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, killed after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A default emulator for the test (one with faults or options is the test's own)."""
    async with Emulator() as running:
        yield running
