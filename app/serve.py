"""`live-relay serve`: the relay under uvicorn (uvloop, httptools, websockets-sansio)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from app.exit_status import ExitStatus
from app.factory import create_app
from app.logs import configure_logging
from app.metrics import prepare_multiprocess
from app.ports import said_cannot_listen
from app.relay.client.bounded_protocols import ConnectionLimits, RelayUvicornConfig
from app.settings import Settings, SettingsError, describe_settings, load_settings
from app.startup import Problem, StartupError, preflight, settings_problems
from app.supervisor import ReloadingMultiprocess

# Client-leg keepalive: the google-genai SDK pings every 20 s; we ping idle clients as often.
CLIENT_PING_SECONDS = 20.0


def settings_help() -> str:
    """Every setting with its variable and default, for `--help` (as docs/configuration.md)."""
    lines = ["settings (environment variables, or a .env file):"]
    for variable, default, description in describe_settings():
        lines.append(f"  {variable:40} {description} [default: {default}]")
    return "\n".join(lines)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (RELAY_HOST)")
    parser.add_argument("--port", type=int, help="TCP port, 0 for any free one (RELAY_PORT)")
    parser.add_argument("--tls-cert", dest="tls_cert_file", help="PEM certificate: serve wss://")
    parser.add_argument("--tls-key", dest="tls_key_file", help="PEM private key for --tls-cert")


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (RELAY_WORKERS)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = settings_help()


def overrides_from(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run(args: argparse.Namespace) -> int:
    names = ("host", "port", "workers", "tls_cert_file", "tls_key_file")
    try:
        settings = load_settings(**overrides_from(args, names))
        preflight(settings)
    except SettingsError as exc:
        return refuse(settings_problems(exc))
    except StartupError as exc:
        return refuse(exc.problems)
    listen = "--port {port} (or RELAY_PORT={port})"
    return said_cannot_listen(settings.host, settings.port, option=listen) or serve(settings)


def refuse(problems: list[Problem]) -> int:
    """Say each problem in one line on stderr; the exit status is the first one's kind."""
    for problem in problems:
        print(f"live-relay: {problem.line}", file=sys.stderr)
    return problems[0].status


def uvicorn_config(settings: Settings, app: Any, *, configure_logs: bool = True) -> uvicorn.Config:
    """uvicorn's configuration for the relay; tests pass `configure_logs=False` to keep theirs.
    The protocols are uvicorn's httptools and websockets-sansio with every wait on a client
    bounded (`app.relay.client.bounded_protocols`)."""
    return RelayUvicornConfig(
        app,
        connection_limits=ConnectionLimits.from_settings(settings),
        factory=isinstance(app, str),
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        # The protocols cap frames at the setup size until a session is admitted.
        ws_max_size=max(settings.max_setup_frame_bytes, settings.max_frame_bytes),
        ws_per_message_deflate=settings.client_permessage_deflate,
        ws_ping_interval=CLIENT_PING_SECONDS,
        ws_ping_timeout=CLIENT_PING_SECONDS,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        log_config=configure_logging(settings) if configure_logs else None,
        server_header=False,
        # The relay drains sessions itself before uvicorn's shutdown; this only bounds stragglers.
        timeout_graceful_shutdown=5,
    )


def public_url(settings: Settings, port: int) -> str:
    scheme = "wss" if settings.tls_enabled else "ws"
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host
    return f"{scheme}://{host}:{port}/v1/live"


def _exit_zero_after_graceful_shutdown(signum: int, frame: object) -> None:
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; by then the
    # sessions are drained, so SIGTERM ends the process with status 0.
    raise SystemExit(0)


def announce_url(settings: Settings, port: int) -> str:
    return f"live-relay listening on {public_url(settings, port)}"


def serve(settings: Settings, announce: Callable[[Settings, int], str] = announce_url) -> int:
    """Run until SIGTERM (drain, then exit 0) or SIGINT; print `announce` once the port is bound.
    A start-up failure exits `STARTUP_FAILED`, never uvicorn's 3 (see `app.exit_status`)."""
    signal.signal(signal.SIGTERM, _exit_zero_after_graceful_shutdown)
    try:
        if settings.workers > 1:
            prepare_multiprocess(settings)
            config = uvicorn_config(settings, "app.factory:create_app")
            sock = config.bind_socket()
            print(announce(settings, _port(sock)), flush=True)
            ReloadingMultiprocess(config, sockets=[sock]).run()
            return ExitStatus.OK
        config = uvicorn_config(settings, create_app(settings))
        sock = config.bind_socket()
        print(announce(settings, _port(sock)), flush=True)
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    except SystemExit as exit_:
        if exit_.code == uvicorn.config.STARTUP_FAILURE:
            return ExitStatus.STARTUP_FAILED
        raise
    return ExitStatus.OK if server.started else ExitStatus.STARTUP_FAILED


def _port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port
