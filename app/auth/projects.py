"""Projects (tenants) and the registry that finds them by name, key, issuer or Firebase project.

Projects come from the projects file (`RELAY_PROJECTS_FILE`) or, without one, a single project
named "default" whose keys are `RELAY_API_KEYS` (hashed in memory). The registry holds an
immutable snapshot; `reload()` builds a new one and swaps it in, so a request never sees half
of an old configuration and half of a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from app.auth.keys import hash_api_key
from app.auth.origins import origin_allowed
from app.auth.projects_file import (
    ProjectEntry,
    ProjectsFileError,
    read_projects_file,
)
from app.auth.setup_locks import bare_model_name
from app.ledger.budgets import BudgetLimits
from app.ledger.prices import ModelPrice
from app.quota.types import QuotaLimits
from app.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
FIREBASE_ISSUER_PREFIX = "https://securetoken.google.com/"


@dataclass(frozen=True)
class InputLimits:
    """What one session may send. The defaults carry 16 kHz audio in 10 ms chunks (100 frames/s,
    ~45 KB/s as base64) plus 1 fps video of large JPEG frames, with room to spare."""

    frames_per_second: int = 200
    bytes_per_second: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class SessionTokenPolicy:
    """Ceilings of relay-issued session tokens; the defaults are those of Google's ephemeral
    tokens: start a session within 60 s, live 30 min, start one session."""

    max_uses: int = 1
    lifetime_seconds: float = 1800.0
    new_session_seconds: float = 60.0


@dataclass(frozen=True)
class JwtIssuer:
    """An identity provider whose JWTs the project accepts, with its algorithm pinned."""

    issuer: str
    audience: str
    algorithm: Literal["HS256", "RS256", "ES256"]
    secret: SecretStr | None = field(default=None, repr=False)  # HS256
    jwks_source: str | None = None  # RS256 / ES256: a URL or a file path


@dataclass(frozen=True)
class AppCheckPolicy:
    """Firebase App Check tokens required in addition to the user credential."""

    project_number: str
    app_ids: frozenset[str] = frozenset()  # empty: any app of the Firebase project


@dataclass(frozen=True)
class Project:
    """A tenant: its credentials, limits and policy."""

    name: str
    enabled: bool = True
    api_key_hashes: frozenset[str] = field(default=frozenset(), repr=False)
    allowed_origins: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] | None = None  # None: settings.allowed_models
    locked_setup: Mapping[str, Any] = field(default_factory=dict)  # client value differs: 1008
    on_locked_update: Literal["refuse", "drop"] = "refuse"  # a contextUpdate touching a lock
    default_setup: Mapping[str, Any] = field(default_factory=dict)  # filled in when left out
    resumption: bool | None = None  # None: settings.resumption_enabled
    quota: QuotaLimits = field(default_factory=QuotaLimits)
    budgets: BudgetLimits = field(default_factory=BudgetLimits)  # per day and month
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)  # over the global table
    input_limits: InputLimits = InputLimits()
    session_tokens: SessionTokenPolicy = SessionTokenPolicy()
    issuers: tuple[JwtIssuer, ...] = ()
    firebase_projects: tuple[str, ...] = ()
    app_check: AppCheckPolicy | None = None

    def allows_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.allowed_origins)

    def models(self, settings: Settings) -> tuple[str, ...]:
        """The models this project's sessions may use."""
        return self.allowed_models if self.allowed_models is not None else settings.allowed_models

    def resumes(self, settings: Settings) -> bool:
        """Whether this project's sessions switch upstream connections transparently."""
        return self.resumption if self.resumption is not None else settings.resumption_enabled


def default_quota(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        max_sessions=settings.default_max_sessions,
        max_sessions_per_user=settings.default_max_sessions_per_user,
        tokens_per_minute=settings.default_tokens_per_minute,
        over_budget=settings.default_over_budget,
        shed_grace_percent=settings.default_shed_grace_percent,
    )


def default_project(settings: Settings) -> Project:
    """The one project of a relay without a projects file: RELAY_API_KEYS are its keys."""
    return Project(
        name=DEFAULT_PROJECT,
        api_key_hashes=frozenset(hash_api_key(k.get_secret_value()) for k in settings.api_keys),
        allowed_origins=settings.allowed_origins,
        quota=default_quota(settings),
    )


def project_from_entry(name: str, entry: ProjectEntry, settings: Settings) -> Project:
    """A project of the file, with settings defaults filled in where it says nothing."""
    quota_defaults = default_quota(settings)
    quota_overrides = entry.quota.model_dump(exclude_unset=True)
    input_defaults, token_defaults = InputLimits(), SessionTokenPolicy()
    tokens = entry.session_tokens
    project = Project(
        name=name,
        enabled=entry.enabled,
        api_key_hashes=frozenset(entry.api_keys),
        allowed_origins=entry.allowed_origins,
        allowed_models=entry.allowed_models,
        locked_setup=entry.locked_setup,
        on_locked_update=entry.on_locked_update,
        default_setup=entry.default_setup,
        resumption=entry.resumption,
        quota=QuotaLimits(
            max_sessions=quota_overrides.get("max_sessions", quota_defaults.max_sessions),
            max_sessions_per_user=quota_overrides.get(
                "max_sessions_per_user", quota_defaults.max_sessions_per_user
            ),
            tokens_per_minute=quota_overrides.get(
                "tokens_per_minute", quota_defaults.tokens_per_minute
            ),
            over_budget=quota_overrides.get("over_budget", quota_defaults.over_budget),
            shed_grace_percent=quota_overrides.get(
                "shed_grace_percent", quota_defaults.shed_grace_percent
            ),
        ),
        budgets=BudgetLimits(**entry.budgets.model_dump()),
        prices={pattern: price.price() for pattern, price in entry.prices.items()},
        input_limits=InputLimits(
            frames_per_second=entry.input_limits.frames_per_second
            or input_defaults.frames_per_second,
            bytes_per_second=entry.input_limits.bytes_per_second or input_defaults.bytes_per_second,
        ),
        session_tokens=SessionTokenPolicy(
            max_uses=tokens.max_uses or token_defaults.max_uses,
            lifetime_seconds=tokens.lifetime_seconds or token_defaults.lifetime_seconds,
            new_session_seconds=tokens.new_session_seconds or token_defaults.new_session_seconds,
        ),
        issuers=tuple(
            JwtIssuer(
                issuer=issuer.issuer,
                audience=issuer.audience,
                algorithm=issuer.algorithm,
                secret=issuer.secret,
                jwks_source=issuer.jwks_url
                or (str(issuer.jwks_file) if issuer.jwks_file else None),
            )
            for issuer in entry.issuers
        ),
        firebase_projects=entry.firebase_projects,
        app_check=(
            AppCheckPolicy(entry.app_check.project_number, frozenset(entry.app_check.app_ids))
            if entry.app_check
            else None
        ),
    )
    locked_model = project.locked_setup.get("model")
    if locked_model is not None and bare_model_name(locked_model) not in project.models(settings):
        raise ProjectsFileError(
            f"project {name!r}: locked model {locked_model!r} is not among its allowed models"
        )
    return project


def load_projects(path: Path, settings: Settings) -> list[Project]:
    """Every project of the file at `path`, or ProjectsFileError saying what to fix."""
    parsed = read_projects_file(path)
    return [project_from_entry(name, entry, settings) for name, entry in parsed.projects.items()]


@dataclass(frozen=True)
class _Snapshot:
    by_name: Mapping[str, Project]
    by_key_hash: Mapping[str, Project]
    by_issuer: Mapping[str, tuple[Project, JwtIssuer]]
    by_firebase_project: Mapping[str, Project]

    @classmethod
    def of(cls, projects: Iterable[Project]) -> _Snapshot:
        projects = list(projects)
        return cls(
            by_name={p.name: p for p in projects},
            by_key_hash={h: p for p in projects for h in p.api_key_hashes},
            by_issuer={i.issuer: (p, i) for p in projects for i in p.issuers},
            by_firebase_project={f: p for p in projects for f in p.firebase_projects},
        )


class ProjectRegistry:
    """The projects in force, looked up by what a credential says."""

    def __init__(
        self,
        projects: Iterable[Project],
        *,
        projects_file: Path | None = None,
        settings: Settings | None = None,
    ) -> None:
        """`projects_file` and `settings` (both or neither) make `reload()` re-read the file."""
        if (projects_file is None) != (settings is None):
            raise ValueError("projects_file and settings go together")
        self._snapshot = _Snapshot.of(projects)
        self._projects_file = projects_file
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> ProjectRegistry:
        """From RELAY_PROJECTS_FILE (ProjectsFileError if broken), else the default project."""
        if settings.projects_file is None:
            return cls([default_project(settings)])
        projects = load_projects(settings.projects_file, settings)
        logger.info("loaded %d projects from %s", len(projects), settings.projects_file)
        return cls(projects, projects_file=settings.projects_file, settings=settings)

    @property
    def projects(self) -> Mapping[str, Project]:
        return self._snapshot.by_name

    def get(self, name: str) -> Project | None:
        return self._snapshot.by_name.get(name)

    def for_api_key(self, key: str) -> Project | None:
        """The project holding `key`. A dict lookup by SHA-256 digest is safe from timing
        attacks: its timing can only reveal digest prefixes, which say nothing about any key."""
        return self._snapshot.by_key_hash.get(hash_api_key(key))

    def for_issuer(self, issuer: str) -> tuple[Project, JwtIssuer] | None:
        return self._snapshot.by_issuer.get(issuer)

    def for_firebase_project(self, firebase_project: str) -> Project | None:
        return self._snapshot.by_firebase_project.get(firebase_project)

    def reload(self) -> bool:
        """Re-read the projects file. A broken file keeps the projects in force and logs why."""
        if self._projects_file is None or self._settings is None:
            return False
        try:
            projects = load_projects(self._projects_file, self._settings)
        except ProjectsFileError as exc:
            # The message names every problem; a traceback would only bury it.
            logger.error("projects file not reloaded, keeping the previous projects: %s", exc)  # noqa: TRY400
            return False
        self._snapshot = _Snapshot.of(projects)
        logger.info("reloaded %d projects from %s", len(projects), self._projects_file)
        return True
