"""What the load generator can be pointed at, each started fresh on the proxy core.

`direct` is the echo upstream itself (the baseline every added latency is measured against);
`relay` is `live-relay serve` as a user deploys it (auth on, quotas in Redis, metrics on); the
`bare*` passthroughs are the relay's stack without its features; `nginx` is what a C proxy
costs. The variants exist to decide the relay's defaults with numbers (see
docs/performance.md): WebSocket implementation, event loop, permessage-deflate, workers.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.processes import pinned, python, running
from tests.support.net import free_port
from tests.support.tls import TLSFiles, make_tls_files

VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
VERTEX_MODEL = (
    "projects/loadtest/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"
)
RELAY_MODEL = "gemini-live-2.5-flash"


@dataclass(frozen=True)
class Services:
    """What every target of a run shares: the emulator, Redis, a key, where logs go."""

    emulator_base_url: str  # ws://127.0.0.1:PORT of the echo upstream
    redis_url: str
    api_key_file: Path
    workdir: Path
    proxy_core: int

    @property
    def emulator_url(self) -> str:
        return self.emulator_base_url + VERTEX_PATH


@dataclass(frozen=True)
class Endpoint:
    """A started target: where to connect, what loadtest needs to say, what to sample."""

    url: str
    loadtest_options: tuple[str, ...]
    pid: int | None  # the proxy process tree; None when there is no proxy


Starter = Callable[[Services], contextlib.AbstractContextManager[Endpoint]]


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    start: Starter
    loadtest_options: tuple[str, ...] = field(default=())

    @property
    def is_proxy(self) -> bool:
        return self.name != "direct"


@contextlib.contextmanager
def _direct(services: Services) -> Iterator[Endpoint]:
    yield Endpoint(services.emulator_url, ("--model", VERTEX_MODEL), pid=None)


def _tls_files(services: Services) -> TLSFiles:
    """A throwaway CA and a certificate for 127.0.0.1, made once per run."""
    directory = services.workdir / "tls"
    if not directory.exists():
        directory.mkdir()
        return make_tls_files(directory)
    return TLSFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")


def _relay(*, tls: bool = False, **extra_env: str) -> Starter:
    @contextlib.contextmanager
    def start(services: Services) -> Iterator[Endpoint]:
        port = free_port()
        tls_env: dict[str, str] = {}
        scheme = "ws"
        ca_options: tuple[str, ...] = ()
        if tls:
            files = _tls_files(services)
            tls_env = {
                "RELAY_TLS_CERT_FILE": str(files.cert_file),
                "RELAY_TLS_KEY_FILE": str(files.key_file),
            }
            scheme, ca_options = "wss", ("--ca-file", str(files.ca_file))
        env = {
            "RELAY_PORT": str(port),
            "RELAY_UPSTREAM": "emulator",
            "RELAY_EMULATOR_URL": services.emulator_base_url,
            "RELAY_API_KEYS": services.api_key_file.read_text().strip(),
            "RELAY_REDIS_URL": services.redis_url,
            "RELAY_METRICS_ENABLED": "true",
            "RELAY_DEFAULT_MAX_SESSIONS": "100000",
            "RELAY_DRAIN_SECONDS": "1",
            **tls_env,
            **extra_env,
        }
        command = pinned(services.proxy_core, python("-m", "app", "serve"))
        log = services.workdir / "relay.log"
        with running(command, log=log, port=port, env=env) as process:
            options = (
                "--model",
                RELAY_MODEL,
                "--api-key-file",
                str(services.api_key_file),
                *ca_options,
            )
            yield Endpoint(f"{scheme}://127.0.0.1:{port}/v1/live", options, process.pid)

    return start


def _passthrough(*flags: str) -> Starter:
    @contextlib.contextmanager
    def start(services: Services) -> Iterator[Endpoint]:
        port = free_port()
        command = pinned(
            services.proxy_core,
            python(
                "-m",
                "tests.bench.passthrough",
                f"--port={port}",
                f"--upstream={services.emulator_url}",
                *flags,
            ),
        )
        log = services.workdir / "passthrough.log"
        with running(command, log=log, port=port) as process:
            yield Endpoint(f"ws://127.0.0.1:{port}/v1/live", ("--model", VERTEX_MODEL), process.pid)

    return start


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-tmp;
    proxy_temp_path {dir}/nginx-tmp;
    fastcgi_temp_path {dir}/nginx-tmp;
    uwsgi_temp_path {dir}/nginx-tmp;
    scgi_temp_path {dir}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


@contextlib.contextmanager
def _nginx(services: Services) -> Iterator[Endpoint]:
    binary = shutil.which("nginx")
    if binary is None:
        raise RuntimeError("nginx is not installed")
    port = free_port()
    directory = services.workdir / "nginx"
    (directory / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    upstream = services.emulator_base_url.removeprefix("ws://")
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream=upstream))
    command = pinned(services.proxy_core, [binary, "-c", str(conf), "-p", str(directory)])
    with running(command, log=directory / "nginx.log", port=port) as process:
        url = f"ws://127.0.0.1:{port}{VERTEX_PATH}"
        yield Endpoint(url, ("--model", VERTEX_MODEL), process.pid)


TARGETS = {
    target.name: target
    for target in [
        Target("direct", "the upstream itself, no proxy: the baseline", _direct),
        Target("relay", "live-relay serve: auth, Redis quotas, metrics, timers", _relay()),
        Target(
            "bare", "passthrough on the relay's stack (websockets-sansio, uvloop)", _passthrough()
        ),
        Target("nginx", "nginx as a plain WebSocket proxy, one worker", _nginx),
        Target(
            "bare-legacy-ws",
            "passthrough with uvicorn's legacy `websockets` implementation",
            _passthrough("--ws=websockets"),
        ),
        Target(
            "bare-asyncio", "passthrough on the stock asyncio loop", _passthrough("--loop=asyncio")
        ),
        Target(
            "bare-deflate",
            "passthrough with permessage-deflate on the client leg",
            _passthrough("--client-deflate"),
            ("--compression",),
        ),
        Target(
            "relay-deflate",
            "the relay with permessage-deflate on the client leg",
            _relay(RELAY_CLIENT_PERMESSAGE_DEFLATE="true"),
            ("--compression",),
        ),
        Target(
            "relay-tls",
            "the relay terminating TLS on the client leg (wss://, a throwaway CA)",
            _relay(tls=True),
        ),
        Target(
            "relay-unpaced",
            "the relay with every handshake started at once (RELAY_HANDSHAKE_CONCURRENCY=0)",
            _relay(RELAY_HANDSHAKE_CONCURRENCY="0"),
        ),
        Target(
            "relay-late-connect",
            "the relay connecting upstream only once admitted (RELAY_UPSTREAM_EARLY_CONNECT=false)",
            _relay(RELAY_UPSTREAM_EARLY_CONNECT="false"),
        ),
        *(
            Target(
                f"relay-paced-{limit}",
                f"the relay with at most {limit} handshakes in progress",
                _relay(RELAY_HANDSHAKE_CONCURRENCY=str(limit)),
            )
            for limit in (8, 16, 64, 128)
        ),
        Target(
            "relay-no-resumption",
            "the relay without transparent resumption (RELAY_RESUMPTION_ENABLED=false): no "
            "replay buffer, what a streaming session holds beside it",
            _relay(RELAY_RESUMPTION_ENABLED="false"),
        ),
        Target(
            "relay-client-resumes",
            "the relay with clients that ask for resumption, as long-lived SDK sessions do "
            "(their handle updates are sealed for them)",
            _relay(),
            ("--resumption",),
        ),
        Target(
            "relay-2-workers",
            "the relay with 2 uvicorn workers on its one core",
            _relay(RELAY_WORKERS="2"),
        ),
    ]
}

DEFAULT_TARGETS = ("direct", "relay", "bare", "nginx")
