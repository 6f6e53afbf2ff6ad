"""Start-up checks beyond what `Settings` validates: the files the settings point at, whether any
client could ever connect, and whether Google credentials are there.

`live-relay serve` (and `dev`) run `preflight` before binding their port and refuse to start with
one line per problem, naming the setting or file and the fix, and exit with the status of the
first problem's kind (`app.exit_status`). `live-relay doctor` runs `check_startup` (the files) as
its first step; the deployment examples' tests run it on the examples' values. Only the Google
credentials check may touch the network (a metadata server probe, as `serve` would do anyway).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import google.auth.exceptions

from app.auth.projects import load_projects
from app.auth.projects_file import ProjectsFileError
from app.exit_status import ExitStatus
from app.relay.upstream.vertex import check_vertex_settings, load_credentials
from app.settings import Settings, SettingsError

GOOGLE_CREDENTIALS_FIX = (
    "run `gcloud auth application-default login`, or set RELAY_VERTEX_CREDENTIALS_FILE to a "
    "service-account key; to try the relay without Google, run `live-relay dev` (make run)"
)
NO_CLIENT_CREDENTIALS = (
    "no client could connect: RELAY_API_KEYS and RELAY_PROJECTS_FILE are both unset -- fix: "
    "make a key with `live-relay keys create --project default` and set RELAY_API_KEYS to it, "
    "or declare projects in RELAY_PROJECTS_FILE (docs/authentication.md)"
)
METRICS_ON_CLIENT_PORT = (
    "RELAY_METRICS_ON_CLIENT_PORT=true serves /metrics where clients connect -- fix: set "
    "RELAY_METRICS_TOKEN too, or scrape RELAY_METRICS_PORT (the default) instead"
)
# pydantic's words for a field the projects file does not know, in a reader's words.
_UNKNOWN_FIELD = ("Extra inputs are not permitted", "no such field (check its spelling)")


@dataclass(frozen=True)
class Problem:
    """One reason not to start: its kind (the exit status) and the line that says it."""

    status: ExitStatus
    line: str


class StartupError(Exception):
    """The relay cannot start; `problems` say why, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(problem.line for problem in problems))
        self.problems = problems

    @property
    def status(self) -> ExitStatus:
        return self.problems[0].status


def settings_problems(error: SettingsError) -> list[Problem]:
    """`load_settings`'s error as one problem per offending setting."""
    text = str(error).removeprefix("invalid settings:")
    return [
        Problem(ExitStatus.SETTINGS, line.strip()) for line in text.splitlines() if line.strip()
    ]


def file_problems(settings: Settings) -> list[Problem]:
    """Every file a setting names that cannot be used, each named with its setting."""
    problems = []
    if settings.upstream == "vertex":
        try:
            check_vertex_settings(settings)
        except SettingsError as exc:
            problems.append(Problem(ExitStatus.FILE, _with_fix(str(exc))))
    return problems + _tls_problems(settings) + _projects_file_problems(settings)


def _with_fix(line: str) -> str:
    """A Vertex file problem with its fix, unless it says one already."""
    if line.startswith("RELAY_VERTEX_CA_FILE"):
        return line + " -- fix: give a PEM bundle of the CA that signs the endpoint, or unset it"
    if "; use" in line:
        return line
    return line + (
        " -- fix: give a service-account key or an authorized_user file, or unset it for "
        "Application Default Credentials"
    )


def check_startup(settings: Settings) -> None:
    """Raise `SettingsError` listing every file problem found (each names its setting)."""
    problems = file_problems(settings)
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(p.line for p in problems))


def preflight(settings: Settings, *, open_metrics: bool = False) -> None:
    """What `serve` checks before it binds: files, client credentials, Google credentials, and
    that /metrics is not open to clients (`open_metrics`: it may be, as on a developer's
    laptop with `live-relay dev`). Raises `StartupError` with every problem found."""
    problems = file_problems(settings)
    if not settings.api_keys and settings.projects_file is None:
        problems.append(Problem(ExitStatus.NO_CLIENT_CREDENTIALS, NO_CLIENT_CREDENTIALS))
    exposed = settings.metrics_enabled and settings.metrics_on_client_port
    if exposed and not settings.metrics_token and not open_metrics:
        # Every project's names, sessions, token use and limits, on the port clients reach.
        problems.append(Problem(ExitStatus.SETTINGS, METRICS_ON_CLIENT_PORT))
    if settings.upstream == "vertex" and not any(
        "RELAY_VERTEX_CREDENTIALS_FILE" in problem.line for problem in problems
    ):
        problems += _google_problems(settings)
    if problems:
        raise StartupError(problems)


def _tls_problems(settings: Settings) -> list[Problem]:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return []  # Settings refuses one without the other
    problems = []
    for setting, option, path, what in (
        ("RELAY_TLS_CERT_FILE", "--tls-cert", cert, "certificate"),
        ("RELAY_TLS_KEY_FILE", "--tls-key", key, "private key"),
    ):
        try:
            path.open("rb").close()
        except OSError as exc:
            problems.append(
                Problem(
                    ExitStatus.FILE,
                    f"{setting} ({option}): cannot read {path}: {exc.strerror} -- fix: give the "
                    f"path of a PEM {what} file",
                )
            )
    if problems:
        return problems
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        return [
            Problem(
                ExitStatus.FILE,
                f"RELAY_TLS_CERT_FILE and RELAY_TLS_KEY_FILE (--tls-cert, --tls-key): {cert} and "
                f"{key} are not a PEM certificate and its private key ({exc.reason or exc}) -- "
                "fix: give the certificate chain and the key it was issued for",
            )
        ]
    return []


def _projects_file_problems(settings: Settings) -> list[Problem]:
    path = settings.projects_file
    if path is None:
        return []
    try:
        load_projects(path, settings)
    except ProjectsFileError as exc:
        return [Problem(ExitStatus.FILE, _projects_line(path, str(exc)))]
    return []


def _projects_line(path: Path, message: str) -> str:
    heading, *details = message.replace(*_UNKNOWN_FIELD).splitlines()
    said = heading.rstrip(":") + (": " + "; ".join(d.strip() for d in details) if details else "")
    return (
        f"RELAY_PROJECTS_FILE: {said} -- fix: correct {path.name} (docs/authentication.md "
        "lists every field), then start again"
    )


def _google_problems(settings: Settings) -> list[Problem]:
    try:
        _, credentials_project = load_credentials(settings)
    except google.auth.exceptions.DefaultCredentialsError:
        return [
            Problem(
                ExitStatus.GOOGLE_CREDENTIALS,
                f"RELAY_UPSTREAM=vertex and no Google credentials were found -- fix: "
                f"{GOOGLE_CREDENTIALS_FIX}",
            )
        ]
    except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        return [
            Problem(
                ExitStatus.GOOGLE_CREDENTIALS,
                f"the Google credentials cannot be used ({detail}) -- fix: "
                f"{GOOGLE_CREDENTIALS_FIX}",
            )
        ]
    if not (settings.vertex_project or credentials_project):
        return [
            Problem(
                ExitStatus.SETTINGS,
                "RELAY_VERTEX_PROJECT is unset and the Google credentials name no project -- "
                "fix: set RELAY_VERTEX_PROJECT=<project id>",
            )
        ]
    return []
