"""The world of the authentication tests: identity providers with real keys, a projects file
that uses every kind of credential, and a factory of relays (the auth layer under uvicorn)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.auth.authenticator import Authenticator
from app.auth.key_sets import FetchPolicy
from app.auth.keys import generate_api_key, hash_api_key
from app.auth.projects import ProjectRegistry
from app.quota.memory import MemoryQuotaStore
from app.quota.types import QuotaStore
from app.settings import Settings
from tests.auth.keys import SigningKey, jwks
from tests.auth.servers import AuthServer, KeyServer, build_auth_app

ACME_KEY = generate_api_key()
GUARDED_KEY = generate_api_key()
DORMANT_KEY = generate_api_key()
HS_SECRET = "hs256-shared-secret-" + "h" * 32
TOKEN_SIGNING_KEY = "relay-signing-key-" + "s" * 32
AUDIENCE = "live-relay"
HS_ISSUER = "https://hs.acme.test"
RS_ISSUER = "https://rs.acme.test"
ES_ISSUER = "https://es.acme.test"
FIREBASE_PROJECT = "acme-firebase"
APP_CHECK_PROJECT_NUMBER = "123456789"
APP_ID = "1:123456789:web:good"
ORIGIN = "https://app.acme.test"
# Refetch as often as the tests need; production waits 10 s between fetches of one source.
FAST_FETCH = FetchPolicy(min_refetch_seconds=0.0, max_age_seconds=3600, timeout_seconds=2)


@dataclass(frozen=True)
class Keys:
    rsa: SigningKey
    rsa_next: SigningKey  # published later: key rotation
    ec: SigningKey
    firebase: SigningKey
    app_check: SigningKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=SigningKey.rsa("rsa-1"),
        rsa_next=SigningKey.rsa("rsa-2"),
        ec=SigningKey.ec("ec-1"),
        firebase=SigningKey.rsa("firebase-1"),
        app_check=SigningKey.rsa("app-check-1"),
    )


@pytest.fixture
def key_server(keys: Keys) -> Iterator[KeyServer]:
    server = KeyServer()
    server.publish("/jwks.json", jwks(keys.rsa))
    server.publish("/firebase-certs", {keys.firebase.kid: keys.firebase.certificate_pem()})
    server.publish("/app-check-jwks", jwks(keys.app_check))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def projects_toml(key_server: KeyServer, es_jwks_file: Path) -> str:
    """acme: every credential kind; guarded: App Check required; dormant: disabled."""
    return f"""
[projects.acme]
api_keys = ["{hash_api_key(ACME_KEY)}"]
allowed_origins = ["{ORIGIN}", "capacitor://localhost"]
firebase_projects = ["{FIREBASE_PROJECT}"]
locked_setup = {{ generationConfig = {{ responseModalities = ["AUDIO"] }} }}

[projects.acme.session_tokens]
max_uses = 3

[[projects.acme.issuers]]
issuer = "{HS_ISSUER}"
audience = "{AUDIENCE}"
algorithm = "HS256"
secret = "{HS_SECRET}"

[[projects.acme.issuers]]
issuer = "{RS_ISSUER}"
audience = "{AUDIENCE}"
algorithm = "RS256"
jwks_url = "{key_server.url("/jwks.json")}"

[[projects.acme.issuers]]
issuer = "{ES_ISSUER}"
audience = "{AUDIENCE}"
algorithm = "ES256"
jwks_file = "{es_jwks_file}"

[projects.guarded]
api_keys = ["{hash_api_key(GUARDED_KEY)}"]
[projects.guarded.app_check]
project_number = "{APP_CHECK_PROJECT_NUMBER}"
app_ids = ["{APP_ID}"]

[projects.dormant]
enabled = false
api_keys = ["{hash_api_key(DORMANT_KEY)}"]
"""


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class World:
    """Where the standard projects file lives and what the relays are built from."""

    directory: Path
    key_server: KeyServer
    projects_file: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "projects_file": self.projects_file,
            "token_signing_key": TOKEN_SIGNING_KEY,
            "jwt_leeway_seconds": 0,
            "firebase_certs_url": self.key_server.url("/firebase-certs"),
            "appcheck_jwks_url": self.key_server.url("/app-check-jwks"),
            **overrides,
        }
        return make_settings(**values)


@pytest.fixture
def world(tmp_path: Path, key_server: KeyServer, keys: Keys) -> World:
    es_jwks_file = tmp_path / "es-jwks.json"
    es_jwks_file.write_text(json.dumps(jwks(keys.ec)))
    projects_file = tmp_path / "projects.toml"
    projects_file.write_text(projects_toml(key_server, es_jwks_file))
    return World(tmp_path, key_server, projects_file)


StartRelay = Callable[..., AuthServer]


@pytest.fixture
def start_relay(world: World) -> Iterator[StartRelay]:
    """Start a relay: `start_relay(settings=..., store=..., fetch=...)`, stopped after the test."""
    started: list[AuthServer] = []

    def start(
        *,
        settings: Settings | None = None,
        store: QuotaStore | None = None,
        fetch: FetchPolicy = FAST_FETCH,
    ) -> AuthServer:
        settings = settings or world.settings()
        store = store or MemoryQuotaStore()
        registry = ProjectRegistry.from_settings(settings)
        authenticator = Authenticator(registry, settings, store, fetch=fetch)
        server = AuthServer(build_auth_app(authenticator, settings, store))
        server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def relay(start_relay: StartRelay) -> AuthServer:
    return start_relay()
