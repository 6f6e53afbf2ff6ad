"""Container health check: exit 0 when this container's relay answers GET /healthz with 200.

The Dockerfile's HEALTHCHECK runs it (slim images have no curl). It reads the relay's own
settings, so it probes the port the relay listens on, over https when the relay serves TLS
itself. The certificate then names the public host, not 127.0.0.1, so it is not verified: the
question here is only whether this process answers.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from app.settings import load_settings

TIMEOUT_SECONDS = 3.0


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def main() -> int:
    settings = load_settings()
    if settings.tls_enabled:
        url = f"https://127.0.0.1:{settings.port}/healthz"
        context: ssl.SSLContext | None = _unverified_context()
    else:
        url = f"http://127.0.0.1:{settings.port}/healthz"
        context = None
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as response:  # noqa: S310 - fixed loopback URL
            status: int = response.status
    except (OSError, urllib.error.URLError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
