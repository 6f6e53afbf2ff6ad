"""The projects file (`RELAY_PROJECTS_FILE`): its TOML schema, validated strictly.

Unknown keys are errors, so a misspelled `alowed_origins` cannot silently leave a project open.
A whole file is checked before any of it is used; see docs/authentication.md for an example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from app.auth.keys import check_key_hash
from app.auth.origins import normalize_origin
from app.auth.setup_locks import canonical_setup_fields, check_defaultable, check_lockable
from app.ledger.prices import PriceEntry

# Project names appear in metric labels, quota keys and logs: keep them plain.
PROJECT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ProjectName = Annotated[str, StringConstraints(pattern=PROJECT_NAME_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (32 bytes).
MIN_HMAC_SECRET_BYTES = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerEntry(_Strict):
    """An identity provider whose JWTs a project accepts."""

    issuer: NonEmpty
    audience: NonEmpty
    algorithm: Literal["HS256", "RS256", "ES256"]
    secret: SecretStr | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerEntry:
        if self.algorithm == "HS256":
            if self.secret is None or self.jwks_url or self.jwks_file:
                raise ValueError("HS256 needs `secret` (and no jwks_url / jwks_file)")
            if len(self.secret.get_secret_value().encode()) < MIN_HMAC_SECRET_BYTES:
                raise ValueError(f"an HS256 secret needs at least {MIN_HMAC_SECRET_BYTES} bytes")
            return self
        if self.secret is not None:
            raise ValueError(f"{self.algorithm} verifies with public keys: drop `secret`")
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"{self.algorithm} needs exactly one of jwks_url or jwks_file")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError("jwks_url must be an https:// (or http://) URL")
        return self


class AppCheckEntry(_Strict):
    """Require a Firebase App Check token beside the user credential."""

    project_number: Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]
    app_ids: tuple[NonEmpty, ...] = ()


class QuotaEntry(_Strict):
    """Overrides of the RELAY_DEFAULT_* quota settings."""

    max_sessions: Annotated[int | None, Field(ge=0)] = None
    max_sessions_per_user: Annotated[int | None, Field(ge=1)] = None
    tokens_per_minute: Annotated[int | None, Field(ge=0)] = None
    over_budget: Literal["shed", "end_all"] | None = None
    shed_grace_percent: Annotated[int | None, Field(ge=0, le=1000)] = None


class BudgetsEntry(_Strict):
    """Tokens and cost per UTC day or month (docs/usage.md#budgets); each optional."""

    tokens_per_day: Annotated[int | None, Field(ge=0)] = None
    tokens_per_month: Annotated[int | None, Field(ge=0)] = None
    usd_per_month: Annotated[float | None, Field(ge=0)] = None
    user_tokens_per_day: Annotated[int | None, Field(ge=0)] = None
    user_tokens_per_month: Annotated[int | None, Field(ge=0)] = None


class InputLimitsEntry(_Strict):
    frames_per_second: Annotated[int | None, Field(gt=0)] = None
    bytes_per_second: Annotated[int | None, Field(gt=0)] = None


class SessionTokensEntry(_Strict):
    """Ceilings for session tokens minted by `POST /v1/tokens`; callers may ask for less."""

    max_uses: Annotated[int | None, Field(ge=1, le=1000)] = None
    lifetime_seconds: Annotated[float | None, Field(gt=0, le=20 * 3600)] = None
    new_session_seconds: Annotated[float | None, Field(gt=0, le=20 * 3600)] = None


class ProjectEntry(_Strict):
    enabled: bool = True
    api_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    allowed_models: tuple[NonEmpty, ...] | None = None
    firebase_projects: tuple[NonEmpty, ...] = ()
    locked_setup: dict[str, Any] = Field(default_factory=dict)
    # What a later `contextUpdate` that would change a locked field gets: "refuse" closes the
    # session 1008 naming the field; "drop" forwards the update without the locked fields.
    on_locked_update: Literal["refuse", "drop"] = "refuse"
    # Filled in when the client's setup leaves them out (unlike locked_setup, which refuses
    # a different value), e.g. contextWindowCompression for audio sessions past 15 minutes.
    default_setup: dict[str, Any] = Field(default_factory=dict)
    # Transparent resumption across upstream connections; unset: RELAY_RESUMPTION_ENABLED.
    resumption: bool | None = None
    issuers: tuple[IssuerEntry, ...] = ()
    app_check: AppCheckEntry | None = None
    quota: QuotaEntry = QuotaEntry()
    budgets: BudgetsEntry = BudgetsEntry()
    # Model pattern -> prices, tried before RELAY_LEDGER_PRICES_FILE's or the built-in table.
    prices: dict[str, PriceEntry] = Field(default_factory=dict)
    input_limits: InputLimitsEntry = InputLimitsEntry()
    session_tokens: SessionTokensEntry = SessionTokensEntry()

    @field_validator("api_keys")
    @classmethod
    def _hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_key_hash(item) for item in value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_origin(item) for item in value)

    @field_validator("locked_setup")
    @classmethod
    def _lockable(cls, value: dict[str, Any]) -> dict[str, Any]:
        fields = canonical_setup_fields(value, "locked_setup")
        check_lockable(fields)
        return fields

    @field_validator("default_setup")
    @classmethod
    def _defaultable(cls, value: dict[str, Any]) -> dict[str, Any]:
        fields = canonical_setup_fields(value, "default_setup")
        check_defaultable(fields)
        return fields


class ProjectsFile(_Strict):
    projects: dict[ProjectName, ProjectEntry]

    @model_validator(mode="after")
    def _claimed_once(self) -> ProjectsFile:
        """A key, issuer or Firebase project decides the project: it may belong to only one."""
        for what, claims in (
            ("API key hash", lambda p: p.api_keys),
            ("issuer", lambda p: tuple(i.issuer for i in p.issuers)),
            ("Firebase project", lambda p: p.firebase_projects),
        ):
            owner: dict[str, str] = {}
            for name, project in self.projects.items():
                for claim in claims(project):
                    if owner.setdefault(claim, name) != name:
                        raise ValueError(
                            f"{what} {claim!r} is declared by both {owner[claim]!r} and {name!r}"
                        )
        return self


class ProjectsFileError(Exception):
    """The projects file cannot be used; the message names the file and each problem."""


def read_projects_file(path: Path) -> ProjectsFile:
    """Parse and validate `path`, or ProjectsFileError saying what to fix."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProjectsFileError(f"cannot read projects file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectsFileError(f"projects file {path} is not valid TOML: {exc}") from None
    try:
        return ProjectsFile.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False):
            where = ".".join(str(part) for part in error["loc"]) or "file"
            problems.append(f"{where}: {error['msg']}")
        raise ProjectsFileError(
            f"invalid projects file {path}:\n  " + "\n  ".join(problems)
        ) from None
