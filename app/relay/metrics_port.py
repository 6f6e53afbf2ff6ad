"""`/metrics` on a port of its own (RELAY_METRICS_PORT), for scrapes from inside a cluster only.

It runs in a thread with its own event loop so that scrapes never queue behind session traffic
and uvicorn's signal handling stays with the relay's server. With several workers each binds the
port with SO_REUSEPORT; any of them answers with the sum over all (multiprocess mode).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from prometheus_client import CollectorRegistry

from app.metrics import build_metrics_app
from app.settings import Settings


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


@contextmanager
def metrics_port(registry: CollectorRegistry, settings: Settings) -> Iterator[int]:
    """Serve `registry` on settings.metrics_port until the block ends; yield the bound port."""
    sock = _listening_socket(settings.host, settings.metrics_port)
    config = uvicorn.Config(
        build_metrics_app(registry, settings.metrics_token),
        loop="asyncio",
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="metrics-port", daemon=True
    )
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
