"""docs/resumption.md stays true: its projects-file example loads, its settings exist."""

from __future__ import annotations

import re
from pathlib import Path

from app.auth.keys import hash_api_key
from app.auth.projects import load_projects
from app.settings import Settings, describe_settings

DOC = (Path(__file__).parents[2] / "docs" / "resumption.md").read_text()


def test_the_projects_file_example_loads_with_resumption_off_and_a_default(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", DOC, flags=re.DOTALL)
    assert example is not None
    projects_file = tmp_path / "projects.toml"
    key_hashes = iter([hash_api_key("lr_a_" + "a" * 40), hash_api_key("lr_b_" + "b" * 40)])
    projects_file.write_text(
        re.sub(r'"sha256:\.\.\."', lambda _: f'"{next(key_hashes)}"', example.group(1))
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    projects = {project.name: project for project in load_projects(projects_file, settings)}
    assert projects["voice-app"].default_setup == {
        "contextWindowCompression": {"slidingWindow": {}}
    }
    assert projects["voice-app"].resumes(settings)
    assert not projects["legacy"].resumes(settings)


def test_the_configuration_table_lists_every_resumption_setting_with_its_default() -> None:
    for variable, default, description in describe_settings():
        if variable.startswith("RELAY_RESUMPTION_"):
            assert f"| `{variable}` | `{default}` | {description} |" in DOC


def test_the_doc_names_only_settings_that_exist() -> None:
    settings = {f"RELAY_{name.upper()}" for name in Settings.model_fields}
    assert set(re.findall(r"RELAY_[A-Z0-9_]+", DOC)) <= settings
