"""A local OAuth2 token endpoint and a service-account file pointing at it.

google-auth runs its real service-account flow (a signed JWT assertion POSTed to `token_uri`);
only the endpoint is ours, so a test can count refreshes and choose token lifetimes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class TokenServer:
    url: str
    expires_in: int
    delay_seconds: float = 0.0
    issued: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> str:
        with self._lock:
            token = f"ya29.test-token-{len(self.issued) + 1}"
            self.issued.append(token)
            return token


@contextmanager
def token_server(expires_in: int = 3600, delay_seconds: float = 0.0) -> Iterator[TokenServer]:
    state: TokenServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            assertion = form.get("assertion", [""])[0]
            claims = jwt.decode(assertion, options={"verify_signature": False})
            ok = form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            if not ok or "cloud-platform" not in claims.get("scope", ""):
                self.send_response(400)
                self.end_headers()
                return
            time.sleep(state.delay_seconds)
            body = json.dumps(
                {
                    "access_token": state.issue(),
                    "expires_in": state.expires_in,
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = TokenServer(
        f"http://127.0.0.1:{server.server_address[1]}/token", expires_in, delay_seconds
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def write_service_account(path: Path, token_uri: str, project: str = "test-project") -> Path:
    """A real service-account JSON (fresh RSA key) whose token_uri is the local server."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "test-key-1",
                "private_key": pem,
                "client_email": f"relay@{project}.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    return path
