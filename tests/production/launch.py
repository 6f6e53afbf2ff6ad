"""How a test starts `live-relay serve` on the production path, per credential kind.

The settings each kind is deployed with are named once here (`DEPLOYED_SETTINGS`): the
production tests start the relay with exactly these, and the docker compose Vertex overlay and
the Kubernetes example are checked to set exactly the same (`tests/ops`). The tests add only
`TEST_ENDPOINT_SETTINGS`, which point the relay at the local wss:// emulator instead of Google.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.emulator import Emulator
from tests.support.tls import TLSFiles
from tests.support.token_server import TokenServer, write_authorized_user, write_service_account

CredentialKind = Literal["service_account", "authorized_user", "metadata_server"]
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = (
    "service_account",
    "authorized_user",
    "metadata_server",
)

PROJECT = "test-project"
LOCATION = "us-central1"
API_KEY = "lr_test_" + "p" * 32

# The Vertex settings of a deployment using each kind of credentials.
_COMMON = frozenset({"RELAY_UPSTREAM", "RELAY_VERTEX_PROJECT", "RELAY_VERTEX_LOCATION"})
DEPLOYED_SETTINGS: dict[CredentialKind, frozenset[str]] = {
    "service_account": _COMMON | {"RELAY_VERTEX_CREDENTIALS_FILE"},
    "authorized_user": _COMMON | {"RELAY_VERTEX_CREDENTIALS_FILE"},
    "metadata_server": _COMMON,  # Cloud Run, GKE Workload Identity: no key file at all
}
# What only a test sets: the endpoint (an emulator instead of Google) and the CA it trusts.
TEST_ENDPOINT_SETTINGS = frozenset({"RELAY_VERTEX_BASE_URL", "RELAY_VERTEX_CA_FILE"})


@dataclass(frozen=True)
class Launch:
    env: dict[str, str]  # the relay process's environment additions
    module: str  # `python -m MODULE serve`


def isolated_google_environment(home: Path) -> dict[str, str]:
    """An environment in which google-auth finds no credentials of this machine's user:
    no GOOGLE_APPLICATION_CREDENTIALS, an empty HOME and gcloud config, no metadata server."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "GOOGLE_CLOUD_PROJECT": "",
        "GCLOUD_PROJECT": "",
        # Nothing listens on port 9 of localhost: the metadata probe fails at once.
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GCE_METADATA_DETECT_RETRIES": "1",
    }


def vertex_launch(
    kind: CredentialKind,
    tokens: TokenServer,
    emulator: Emulator,
    tls_files: TLSFiles,
    directory: Path,
    **settings: str,
) -> Launch:
    """`live-relay serve` against `emulator` with credentials of `kind` served by `tokens`."""
    env = isolated_google_environment(directory / "home") | {
        "RELAY_UPSTREAM": "vertex",
        "RELAY_VERTEX_PROJECT": PROJECT,
        "RELAY_VERTEX_LOCATION": LOCATION,
        "RELAY_VERTEX_BASE_URL": emulator.base_url,
        "RELAY_VERTEX_CA_FILE": str(tls_files.ca_file),
        "RELAY_TLS_CERT_FILE": str(tls_files.cert_file),
        "RELAY_TLS_KEY_FILE": str(tls_files.key_file),
        "RELAY_API_KEYS": API_KEY,
        **settings,
    }
    module = "app"
    if kind == "service_account":
        path = write_service_account(directory / "service-account.json", tokens.url, PROJECT)
        env["RELAY_VERTEX_CREDENTIALS_FILE"] = str(path)
    elif kind == "authorized_user":
        path = write_authorized_user(directory / "application_default_credentials.json")
        env["RELAY_VERTEX_CREDENTIALS_FILE"] = str(path)
        env["TEST_OAUTH2_TOKEN_ENDPOINT"] = tokens.url
        module = "tests.production.oauth_launcher"
    else:
        env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"] = tokens.metadata_host
    return Launch(env, module)
