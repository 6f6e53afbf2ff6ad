"""Every setting of the relay, read once from `RELAY_*` environment variables and `.env`.

Nothing else in the code base reads the environment: a `Settings` instance is built at start-up
(or by a test) and passed explicitly. Invalid values stop start-up with a message that names the
setting (see `load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.auth.keys import API_KEY_PREFIX, is_api_key
from app.auth.origins import normalize_origin
from app.protocol.models import CURRENT_MODELS, OLDER_MODELS, TRANSCRIBE_LIVE

MiB = 1024 * 1024
MIN_SIGNING_KEY_BYTES = 32  # HS256 wants a key at least as long as its hash

# The current Live generation, then the older models Vertex still serves (app/protocol/models.py).
DEFAULT_ALLOWED_MODELS = (*CURRENT_MODELS, *OLDER_MODELS)

CommaList = Annotated[tuple[str, ...], NoDecode]


def _split_commas(value: object) -> object:
    """`a, b,c` -> ("a", "b", "c"): friendlier in an env file than a JSON list."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class Settings(BaseSettings):
    """The relay's configuration. Field descriptions double as `--help` and docs text."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_file=".env", extra="ignore", frozen=True
    )

    # --- serving --------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0: any free).")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    tls_cert_file: Path | None = Field(None, description="PEM certificate: serve wss:// directly.")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file.")
    client_permessage_deflate: bool = Field(
        False, description="Offer permessage-deflate to clients (costs CPU and memory per frame)."
    )
    max_setup_frame_bytes: int = Field(
        1 * MiB,
        gt=0,
        description="Largest frame before a session is admitted (the setup); larger: 1009.",
    )
    max_frame_bytes: int = Field(
        8 * MiB, gt=0, description="Largest client frame after setup; larger: close 1009."
    )
    client_input_budget_bytes: int = Field(
        256 * MiB,
        gt=0,
        description="Client input one process holds before it can go upstream (frames still "
        "arriving, frames sent before setupComplete); past it, the connections holding the "
        "most are closed 1013 first. At least RELAY_MAX_FRAME_BYTES.",
    )
    setup_timeout_seconds: float = Field(
        30.0, gt=0, description="Time a client has to send its setup frame after connecting."
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send a whole HTTP request or upgrade; 408."
    )
    handshake_concurrency: int = Field(
        32,
        ge=0,
        description="WebSocket handshakes in progress at once per worker (upgrade request to "
        "101); more wait their turn unread, so a connection storm does not stall live "
        "sessions (0: no limit).",
    )
    client_send_timeout_seconds: float = Field(
        10.0, gt=0, description="A client that reads nothing of what is sent for this long: abort."
    )
    max_pending_admissions_per_project: int = Field(
        64, ge=1, description="Connections of a project authenticated but not yet admitted; 429."
    )
    max_pending_admissions_per_credential: int = Field(
        16, ge=1, description="Connections of one credential not yet admitted; more: 429."
    )

    # --- upstream -------------------------------------------------------------------------
    upstream: Literal["vertex", "emulator"] = Field(
        "vertex", description="`vertex` (Vertex AI Live) or `emulator` (in-process, offline)."
    )
    vertex_project: str | None = Field(
        None, description="Google Cloud project of the Vertex endpoint (default: from ADC)."
    )
    vertex_location: str = Field(
        "us-central1", description="Vertex location; `global` uses the global host."
    )
    vertex_api_version: Literal["v1beta1", "v1"] = Field(
        "v1beta1", description="Vertex Live API version."
    )
    vertex_base_url: str | None = Field(
        None, description="Override the upstream wss:// host (private endpoints, an emulator)."
    )
    vertex_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle the upstream's certificate must chain to (default: the "
        "system's trusted CAs). Verification is always on.",
    )
    vertex_allow_insecure: bool = Field(
        False,
        description="Allow a ws:// RELAY_VERTEX_BASE_URL (private test endpoints only: the "
        "access token then travels unencrypted).",
    )
    vertex_credentials_file: Path | None = Field(
        None, description="Service-account or ADC JSON file; default: Application Default Creds."
    )
    upstream_permessage_deflate: bool = Field(
        False, description="Offer permessage-deflate to the upstream."
    )
    upstream_connect_timeout_seconds: float = Field(
        10.0, gt=0, description="Upstream TCP + TLS + WebSocket handshake deadline."
    )
    upstream_early_connect: bool = Field(
        True,
        description="Open a session's upstream connection while its quota admission answers "
        "(a refused session then wastes one upstream handshake, bounded per project).",
    )
    upstream_ping_interval_seconds: float = Field(
        20.0, gt=0, description="Keepalive ping interval on the upstream leg."
    )
    upstream_ping_timeout_seconds: float = Field(
        60.0, gt=0, description="How long the upstream may take to answer a ping (it is slow)."
    )
    token_refresh_margin_seconds: float = Field(
        300.0, ge=0, description="Refresh the upstream access token this long before it expires."
    )
    emulator_url: str | None = Field(
        None,
        description="With upstream=emulator: use this running emulator instead of one "
        "started in-process (e.g. ws://emulator:9000 in docker compose).",
    )

    # --- session policy -------------------------------------------------------------------
    allowed_models: CommaList = Field(
        DEFAULT_ALLOWED_MODELS, description="Models clients may request (comma-separated)."
    )
    estimated_usage_models: CommaList = Field(
        (TRANSCRIBE_LIVE,),
        description="Models reported to send no usageMetadata: the relay charges their "
        "sessions an estimate instead (25 tokens per second of client audio, per turn that "
        "brings none), and tells the client in a usageMetadata of its own.",
    )
    forward_unknown_client_fields: bool = Field(
        False,
        description="Forward client message types and fields the relay's protocol model does "
        "not know, as sent (for a new Vertex field before the relay learns it); off: close 1007 "
        "naming them, since a new field could carry configuration no lock covers.",
    )
    max_session_seconds: float = Field(
        1800.0, gt=0, description="Hard limit on one client session."
    )
    goaway_notice_seconds: float = Field(
        60.0, ge=0, description="A goAway is sent this long before the session limit."
    )
    idle_timeout_seconds: float = Field(
        300.0, gt=0, description="Close a session after this long without a client frame."
    )
    drain_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long live sessions get to finish."
    )
    resumption_enabled: bool = Field(
        True,
        description="Keep sessions across upstream connections (transparent resumption); "
        "a project may turn it off.",
    )
    resumption_buffer_bytes: int = Field(
        8 * MiB, gt=0, description="Client input kept per session until the upstream confirms it."
    )
    resumption_buffer_budget_bytes: int = Field(
        256 * MiB,
        gt=0,
        description="Client input kept by all sessions of one process until the upstream "
        "confirms it; past it, the sessions holding the most lose replayability first.",
    )
    resumption_switch_timeout_seconds: float = Field(
        15.0, gt=0, description="Deadline of one switch to a new upstream connection."
    )
    resumption_goaway_wait_seconds: float = Field(
        10.0, ge=0, description="After an upstream goAway, how long to wait for a turn to end."
    )
    resumption_make_before_break: bool = Field(
        True, description="Resume on a new connection before closing the old one."
    )
    resumption_index_counting: Literal["per_connection", "per_session"] = Field(
        "per_connection",
        description="How the upstream counts lastConsumedClientMessageIndex (undocumented).",
    )

    # --- client authentication ------------------------------------------------------------
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Static API keys of the default project (comma-separated)."
    )
    allowed_origins: CommaList = Field(
        (),
        description="Browser origins the default project (no projects file) accepts; * for any.",
    )
    demo_page: bool = Field(
        False, description="Serve the browser demo page at / (live-relay dev turns it on)."
    )
    projects_file: Path | None = Field(
        None, description="TOML file declaring projects, their keys, issuers and limits."
    )
    token_signing_key: SecretStr | None = Field(
        None, description="Secret that signs relay-issued session tokens (shared by replicas)."
    )
    jwt_leeway_seconds: float = Field(
        30.0, ge=0, description="Clock skew tolerated on exp/nbf/iat of client JWTs."
    )
    firebase_certs_url: str = Field(
        "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
        description="Where Firebase ID token signing certificates are fetched.",
    )
    appcheck_jwks_url: str = Field(
        "https://firebaseappcheck.googleapis.com/v1/jwks",
        description="Where Firebase App Check signing keys are fetched.",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for the admin endpoints (usage)."
    )

    # --- quotas ---------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="Quota store: redis://, rediss://, redis+sentinel://; unset: memory."
    )
    redis_cluster: bool = Field(False, description="Treat redis_url as a Redis Cluster.")
    quota_key_prefix: str = Field("relay", description="Prefix of every quota key in Redis.")
    quota_fail_open: bool = Field(
        False, description="Admit sessions when the quota store is unreachable."
    )
    lease_ttl_seconds: float = Field(
        30.0, gt=0, description="A session slot not renewed for this long is freed."
    )
    default_max_sessions: int = Field(
        10, ge=0, description="Concurrent sessions per project unless the project says otherwise."
    )
    default_max_sessions_per_user: int | None = Field(
        None, ge=1, description="Concurrent sessions per user (unset: no per-user cap)."
    )
    default_tokens_per_minute: int = Field(
        4_000_000, ge=0, description="Tokens per project per sliding minute, unless overridden."
    )
    default_over_budget: Literal["shed", "end_all"] = Field(
        "shed",
        description="What happens to live sessions while a project's tokens-per-minute window "
        "is over budget, unless the project says otherwise: `shed` ends the sessions that spent "
        "the most, one at a time at their turn boundaries, only while the window (less what "
        "shed sessions spent) is over budget plus the grace; `end_all` ends every session at "
        "its next turn boundary (docs/quotas.md#over-the-budget).",
    )
    default_shed_grace_percent: int = Field(
        10,
        ge=0,
        le=1000,
        description="How far over its tokens-per-minute budget, in percent, a project's window "
        "may go before `shed` ends anyone, unless the project says otherwise.",
    )

    # --- usage ledger (docs/usage.md) --------------------------------------------------------
    ledger_url: str | None = Field(
        None,
        description="Where session usage records go: `postgresql://user:pass@host/db` (shared "
        "by replicas) or `sqlite:///path/ledger.sqlite3` (one host; `live-relay dev` uses "
        "`.live-relay/ledger.sqlite3`). Unset: no records are kept.",
    )
    ledger_spool_dir: Path = Field(
        Path(".live-relay/ledger-spool"),
        description="Directory of the local spool: records kept while the database is away.",
    )
    ledger_spool_max_bytes: int = Field(
        256 * MiB, gt=0, description="Largest spool file of one process; beyond it: lost, logged."
    )
    ledger_checkpoint_seconds: float = Field(
        30.0,
        gt=0,
        description="How often running sessions are checkpointed: the most a killed replica loses.",
    )
    ledger_queue_size: int = Field(
        10_000, ge=1, description="Records waiting for the ledger's writer, at most."
    )
    ledger_batch_size: int = Field(500, ge=1, description="Records per database transaction.")
    ledger_retry_seconds: float = Field(
        5.0, gt=0, description="While the database is away: how often to try it again."
    )
    ledger_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline of one ledger database call (connect included)."
    )
    budget_grace_seconds: float = Field(
        10.0,
        gt=0,
        description="A session that spent its budget ends at its next turn boundary, or this "
        "long after its goAway if no turn ends.",
    )
    ledger_prices_file: Path | None = Field(
        None,
        description="TOML file of model prices replacing the built-in table (docs/usage.md).",
    )

    # --- observability --------------------------------------------------------------------
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics.")
    metrics_port: int = Field(
        9100,
        ge=0,
        le=65535,
        description="Port of its own serving /metrics, on RELAY_HOST, for scrapes from inside "
        "the cluster (0: any free one).",
    )
    metrics_on_client_port: bool = Field(
        False,
        description="Serve /metrics on the clients' port instead of RELAY_METRICS_PORT; "
        "`live-relay serve` then requires RELAY_METRICS_TOKEN.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="Require `Authorization: Bearer <token>` on /metrics."
    )
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator(
        "allowed_models", "estimated_usage_models", "allowed_origins", "api_keys", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("api_keys")
    @classmethod
    def _recognisable_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        # A key without the prefix is read as a JWT and refused on every request.
        for position, key in enumerate(keys, start=1):
            if not is_api_key(key.get_secret_value()):
                raise ValueError(
                    f"API key #{position} does not start with `{API_KEY_PREFIX}`, so no request "
                    "could ever use it: make one with `live-relay keys create --project NAME`"
                )
        return keys

    @field_validator("token_signing_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < MIN_SIGNING_KEY_BYTES:
            raise ValueError(
                f"must be at least {MIN_SIGNING_KEY_BYTES} bytes; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return key

    @field_validator("allowed_origins")
    @classmethod
    def _normalize_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_origin(origin) for origin in origins)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.goaway_notice_seconds >= self.max_session_seconds:
            raise ValueError("goaway_notice_seconds must be below max_session_seconds")
        if self.client_input_budget_bytes < self.max_frame_bytes:
            raise ValueError(
                f"RELAY_CLIENT_INPUT_BUDGET_BYTES ({self.client_input_budget_bytes}) must be at "
                f"least RELAY_MAX_FRAME_BYTES ({self.max_frame_bytes}): a single largest frame "
                "would go over it"
            )
        if self.max_pending_admissions_per_credential > self.max_pending_admissions_per_project:
            raise ValueError(
                "max_pending_admissions_per_credential must not exceed "
                "max_pending_admissions_per_project"
            )
        if self.ledger_url is not None and not self.ledger_url.startswith(
            ("postgresql://", "postgres://", "sqlite:///")
        ):
            raise ValueError(
                "RELAY_LEDGER_URL must start with postgresql:// or sqlite:/// "
                "(e.g. sqlite:///.live-relay/ledger.sqlite3)"
            )
        schemes: tuple[str, ...] = ("wss://", "https://")
        if self.vertex_allow_insecure:
            schemes += ("ws://", "http://")
        if self.vertex_base_url is not None and not self.vertex_base_url.startswith(schemes):
            raise ValueError(
                "RELAY_VERTEX_BASE_URL must start with wss:// (ws:// only with "
                "RELAY_VERTEX_ALLOW_INSECURE=true, for private test endpoints): "
                f"{self.vertex_base_url!r}"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) of every setting: for `--help` and docs/configuration.md."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            shown = ",".join(str(item) for item in default) or "(none)"
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append((f"RELAY_{name.upper()}", shown, field.description or ""))
    return rows


class SettingsError(Exception):
    """Settings could not be built; the message names every offending setting."""


def load_settings(**overrides: object) -> Settings:
    """Build `Settings` from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            env = f"RELAY_{name.upper()}" if error["loc"] else "settings"
            problems.append(f"{env}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
