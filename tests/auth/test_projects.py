"""The projects file: what it accepts, what it refuses (and says why), defaults, reloading,
and `live-relay keys create` producing lines the file accepts."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest

from app.auth.keys import generate_api_key, hash_api_key
from app.auth.projects import DEFAULT_PROJECT, ProjectRegistry
from app.auth.projects_file import ProjectsFileError
from app.cli import main
from app.quota.types import QuotaLimits
from app.settings import DEFAULT_ALLOWED_MODELS
from tests.auth.conftest import ACME_KEY, make_settings

KEY = generate_api_key()


def registry_for(tmp_path: Path, text: str, **settings: object) -> ProjectRegistry:
    path = tmp_path / "projects.toml"
    path.write_text(text)
    return ProjectRegistry.from_settings(make_settings(projects_file=path, **settings))


def test_project_without_overrides_takes_the_settings_defaults(tmp_path: Path) -> None:
    registry = registry_for(
        tmp_path,
        f'[projects.p]\napi_keys = ["{hash_api_key(KEY)}"]\n',
        default_max_sessions=7,
        default_max_sessions_per_user=3,
        default_tokens_per_minute=1000,
    )
    project = registry.get("p")
    assert project is not None
    assert project.enabled
    assert project.quota == QuotaLimits(
        max_sessions=7, max_sessions_per_user=3, tokens_per_minute=1000
    )
    assert project.models(make_settings()) == DEFAULT_ALLOWED_MODELS
    assert registry.for_api_key(KEY) is project
    assert registry.for_api_key(ACME_KEY) is None


def test_project_overrides_quota_limits_models_and_token_ceilings(tmp_path: Path) -> None:
    registry = registry_for(
        tmp_path,
        """
[projects.p]
allowed_models = ["gemini-live-2.5-flash"]
[projects.p.quota]
max_sessions_per_user = 2
[projects.p.input_limits]
frames_per_second = 20
[projects.p.session_tokens]
max_uses = 5
lifetime_seconds = 600
""",
        default_max_sessions=9,
    )
    project = registry.get("p")
    assert project is not None
    assert project.quota == QuotaLimits(max_sessions=9, max_sessions_per_user=2)
    assert project.allowed_models == ("gemini-live-2.5-flash",)
    assert project.input_limits.frames_per_second == 20
    assert project.input_limits.bytes_per_second == 2 * 1024 * 1024
    assert project.session_tokens.max_uses == 5
    assert project.session_tokens.lifetime_seconds == 600
    assert project.session_tokens.new_session_seconds == 60


def test_the_over_budget_policy_defaults_to_shed_and_a_project_may_choose_end_all(
    tmp_path: Path,
) -> None:
    registry = registry_for(
        tmp_path,
        """
[projects.calm]
[projects.strict.quota]
over_budget = "end_all"
[projects.roomy.quota]
shed_grace_percent = 25
""",
        default_shed_grace_percent=5,
    )
    quotas = {name: registry.get(name).quota for name in ("calm", "strict", "roomy")}  # type: ignore[union-attr]
    assert (quotas["calm"].over_budget, quotas["calm"].shed_grace_percent) == ("shed", 5)
    assert (quotas["strict"].over_budget, quotas["strict"].shed_grace_percent) == ("end_all", 5)
    assert (quotas["roomy"].over_budget, quotas["roomy"].shed_grace_percent) == ("shed", 25)


def test_an_unknown_over_budget_policy_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ProjectsFileError, match="over_budget"):
        registry_for(tmp_path, '[projects.p.quota]\nover_budget = "drop_some"\n')


def test_without_a_projects_file_relay_api_keys_form_the_default_project() -> None:
    registry = ProjectRegistry.from_settings(make_settings(api_keys=f"{KEY}, {ACME_KEY}"))
    default = registry.get(DEFAULT_PROJECT)
    assert default is not None
    assert registry.for_api_key(KEY) is default
    assert registry.for_api_key(ACME_KEY) is default
    assert KEY not in repr(default)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[projects.p]\nalowed_origins = ["https://a.test"]', "alowed_origins"),
        (f'[projects.p]\napi_keys = ["{KEY}"]', "sha256:<64 lowercase hex digits>"),
        ('[projects.p]\nallowed_origins = ["https://a.test/app"]', "has a path"),
        ('[projects."bad name"]', "projects.bad name"),
        (
            '[[projects.p.issuers]]\nissuer = "i"\naudience = "a"\nalgorithm = "HS256"\n'
            'secret = "short"',
            "at least 32 bytes",
        ),
        (
            '[[projects.p.issuers]]\nissuer = "i"\naudience = "a"\nalgorithm = "RS256"',
            "exactly one of jwks_url or jwks_file",
        ),
        (
            '[[projects.p.issuers]]\nissuer = "i"\naudience = "a"\nalgorithm = "none"\n',
            "algorithm",
        ),
        (
            '[[projects.p.issuers]]\nissuer = "i"\naudience = "a"\nalgorithm = "RS256"\n'
            'jwks_url = "file:///etc/passwd"',
            "https://",
        ),
        (
            '[[projects.p.issuers]]\nissuer = "i"\naudience = "a"\nalgorithm = "ES256"\n'
            'jwks_file = "k.json"\n[[projects.q.issuers]]\nissuer = "i"\naudience = "b"\n'
            'algorithm = "ES256"\njwks_file = "k.json"',
            "declared by both",
        ),
        ("[projects.p]\nlocked_setup = { sessionResumption = {} }", "cannot be locked"),
        ('[projects.p]\nlocked_setup = { model = "gemini-9" }', "not among its allowed models"),
        ('[projects.p]\ndefault_setup = { model = "gemini-9" }', "cannot have a default"),
        ('[projects.p]\nresumption = "sometimes"', "resumption"),
        ("[projects.p\n", "not valid TOML"),
    ],
    ids=[
        "misspelled-key",
        "plaintext-api-key",
        "origin-with-path",
        "bad-project-name",
        "short-hs256-secret",
        "rs256-without-keys",
        "alg-none",
        "jwks-url-not-http",
        "issuer-in-two-projects",
        "unlockable-field",
        "locked-model-not-allowed",
        "default-model",
        "resumption-not-a-bool",
        "broken-toml",
    ],
)
def test_broken_projects_file_is_refused_with_a_message_naming_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ProjectsFileError) as refusal:
        registry_for(tmp_path, text)
    assert expected in str(refusal.value)
    assert KEY not in str(refusal.value), "a plaintext key put by mistake is never echoed"


def test_missing_projects_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ProjectsFileError, match="cannot read projects file"):
        ProjectRegistry.from_settings(make_settings(projects_file=tmp_path / "absent.toml"))


def test_reload_swaps_in_the_new_projects(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, f'[projects.p]\napi_keys = ["{hash_api_key(KEY)}"]')
    (tmp_path / "projects.toml").write_text(
        f'[projects.q]\napi_keys = ["{hash_api_key(KEY)}"]\n[projects.r]\n'
    )
    assert registry.reload()
    assert set(registry.projects) == {"q", "r"}
    project = registry.for_api_key(KEY)
    assert project is not None
    assert project.name == "q"


def test_reload_of_a_broken_file_keeps_the_old_projects_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = registry_for(tmp_path, f'[projects.p]\napi_keys = ["{hash_api_key(KEY)}"]')
    (tmp_path / "projects.toml").write_text("[projects.p]\nenabled = 'maybe'\n")
    with caplog.at_level(logging.ERROR, logger="app.auth.projects"):
        assert not registry.reload()
    assert registry.for_api_key(KEY) is not None
    assert "projects.p.enabled" in caplog.text
    assert "keeping the previous projects" in caplog.text


def test_keys_create_prints_a_key_once_and_a_hash_line_the_file_accepts(tmp_path: Path) -> None:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["keys", "create", "--project", "mobile"]) == 0
    lines = output.getvalue().splitlines()
    key = next(line for line in lines if line.startswith("lr_"))
    toml = "\n".join(lines[lines.index("[projects.mobile]") :])
    registry = registry_for(tmp_path, toml)
    project = registry.for_api_key(key)
    assert project is not None
    assert project.name == "mobile"
    assert output.getvalue().count(key) == 1


def test_keys_create_refuses_a_project_name_the_file_would_refuse() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["keys", "create", "--project", "no spaces"]) == 2
