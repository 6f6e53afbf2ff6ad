"""A local stand-in for Google's token endpoints, and credential files pointing at it.

One HTTP server plays the three places google-auth gets access tokens from in production:

- `POST /token` with a signed JWT assertion: a service account's `token_uri`;
- `POST /token` with `grant_type=refresh_token`: the OAuth2 endpoint an `authorized_user` ADC
  file refreshes against (google-auth hard-codes Google's; the test points it here);
- `GET /` and `/computeMetadata/v1/...` with `Metadata-Flavor: Google`: the metadata server of
  Cloud Run, GKE Workload Identity and GCE (google-auth finds it through `GCE_METADATA_HOST`).

google-auth runs its real flows; only the endpoints are ours, so a test can count refreshes,
choose token lifetimes and check that an upstream receives a token that is still valid.
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

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_TOKEN = "1//test-refresh-token"
METADATA_PREFIX = "/computeMetadata/v1/"


@dataclass
class TokenServer:
    url: str  # the token endpoint, http://127.0.0.1:PORT/token
    expires_in: int
    delay_seconds: float = 0.0
    project: str = "test-project"
    issued: list[str] = field(default_factory=list)
    expires_at: dict[str, float] = field(default_factory=dict)  # token -> time.time() deadline
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def metadata_host(self) -> str:
        """`host:port`, the value of GCE_METADATA_HOST (and GCE_METADATA_IP)."""
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def service_account_email(self) -> str:
        return f"relay@{self.project}.iam.gserviceaccount.com"

    def issue(self) -> str:
        with self._lock:
            token = f"ya29.test-token-{len(self.issued) + 1}"
            self.issued.append(token)
            self.expires_at[token] = time.time() + self.expires_in
            return token

    def valid(self, token: str) -> bool:
        """Whether `token` was issued here and has not expired: what Google checks."""
        deadline = self.expires_at.get(token)
        return deadline is not None and time.time() < deadline


def _grant_ok(form: dict[str, list[str]]) -> bool:
    grant = form.get("grant_type", [""])[0]
    if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        assertion = form.get("assertion", [""])[0]
        claims = jwt.decode(assertion, options={"verify_signature": False})
        return "cloud-platform" in claims.get("scope", "")
    if grant == "refresh_token":
        return form.get("refresh_token") == [REFRESH_TOKEN] and bool(form.get("client_id"))
    return False


@contextmanager
def token_server(expires_in: int = 3600, delay_seconds: float = 0.0) -> Iterator[TokenServer]:
    state: TokenServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if not _grant_ok(form):
                self._answer(400, {"error": "invalid_grant"})
                return
            time.sleep(state.delay_seconds)
            self._answer(200, self._token())

        def do_GET(self) -> None:
            if self.headers.get("Metadata-Flavor") != "Google":
                self._answer(403, {"error": "Missing Metadata-Flavor: Google"})
                return
            path, _, query = self.path.partition("?")
            if path == "/":  # google-auth's "are we on Google Cloud?" probe
                self._answer(200, "")
                return
            answers: dict[str, object] = {
                "project/project-id": state.project,
                "universe/universe-domain": "googleapis.com",
            }
            # google-auth asks for "default" first, then by the e-mail address it learnt.
            for account in ("default", state.service_account_email):
                if "recursive=true" in query:
                    answers[f"instance/service-accounts/{account}/"] = {
                        "aliases": ["default"],
                        "email": state.service_account_email,
                        "scopes": [CLOUD_PLATFORM_SCOPE],
                    }
                answers[f"instance/service-accounts/{account}/token"] = None  # a new token
            relative = path.removeprefix(METADATA_PREFIX)
            if not path.startswith(METADATA_PREFIX) or relative not in answers:
                self._answer(404, {"error": "not found"})
            elif answers[relative] is None:
                time.sleep(state.delay_seconds)
                self._answer(200, self._token())
            else:
                self._answer(200, answers[relative])

        def _token(self) -> dict[str, object]:
            return {
                "access_token": state.issue(),
                "expires_in": state.expires_in,
                "token_type": "Bearer",
            }

        def _answer(self, status: int, body: object) -> None:
            is_text = isinstance(body, str)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if is_text else "application/json")
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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


def write_authorized_user(path: Path) -> Path:
    """An ADC file as `gcloud auth application-default login` writes it (no token_uri: google-auth
    always refreshes such credentials against Google's fixed endpoint)."""
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "764086051850-test.apps.googleusercontent.com",
                "client_secret": "test-client-secret",
                "refresh_token": REFRESH_TOKEN,
            }
        )
    )
    return path
