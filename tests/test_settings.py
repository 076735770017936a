"""Where settings come from (shipit.settings) and how commands declare shared options."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shipit.cli.options import OUTPUT_OPTIONS, REGISTRY, declare
from shipit.config import FileConfig
from shipit.errors import UsageError
from shipit.settings import (
    context_dir,
    dockerfile_path,
    environment,
    pick,
    registry_values,
)


def test_pick_prefers_the_option_then_the_config_then_the_default() -> None:
    assert pick("eu-west-1", {"region": "us-east-1"}, "region") == "eu-west-1"
    assert pick(None, {"region": "us-east-1"}, "region") == "us-east-1"
    assert pick(None, {}, "region", "default") == "default"
    # False is a value given, not "not given".
    assert pick(False, {"create_repo": True}, "create_repo", True) is False


def test_registry_values_merge_options_config_and_defaults() -> None:
    config = {"registries": ["ecr"], "region": "us-east-1", "namespace": "team"}
    values = registry_values(config, {"region": "eu-west-1", "create_repo": None})
    assert values["registries"] == ("ecr",)
    assert values["region"] == "eu-west-1"
    assert values["namespace"] == "team"
    assert values["create_repo"] is True
    assert values["immutable_tags"] is False
    assert registry_values(config, {"registry": ["dockerhub"]})["registries"] == ("dockerhub",)


def test_environment_is_a_copy_of_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPIT_SETTINGS_PROBE", "1")
    env = environment()
    assert env["SHIPIT_SETTINGS_PROBE"] == "1"
    env["SHIPIT_SETTINGS_PROBE"] = "2"
    assert os.environ["SHIPIT_SETTINGS_PROBE"] == "1"


def test_context_dir_option_then_config_then_working_directory(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "conf").mkdir()
    config = FileConfig(context=tmp_path / "conf")
    assert context_dir("app", config, tmp_path) == (tmp_path / "app").resolve()
    assert context_dir(None, config, tmp_path) == (tmp_path / "conf").resolve()
    assert context_dir(None, FileConfig(), tmp_path) == tmp_path.resolve()


def test_dockerfile_path_option_then_config_then_context(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Other").write_text("FROM scratch\n")
    (tmp_path / "Conf").write_text("FROM scratch\n")
    config = FileConfig(dockerfile=tmp_path / "Conf")
    assert dockerfile_path("Other", config, tmp_path, tmp_path) == (tmp_path / "Other").resolve()
    assert dockerfile_path(None, config, tmp_path, tmp_path) == (tmp_path / "Conf").resolve()
    assert dockerfile_path(None, FileConfig(), tmp_path, tmp_path) == tmp_path / "Dockerfile"
    with pytest.raises(UsageError, match=r"Dockerfile '.*Missing' not found"):
        dockerfile_path("Missing", FileConfig(), tmp_path, tmp_path)


def test_declare_gives_typer_the_shared_options_in_order() -> None:
    app = typer.Typer(add_completion=False)
    seen: dict[str, Any] = {}

    @app.command()
    @declare(REGISTRY, *OUTPUT_OPTIONS)
    def probe(**options: Any) -> None:
        seen.update(options)

    assert list(inspect.signature(probe).parameters) == ["registry", "json", "verbose", "quiet"]
    result = CliRunner().invoke(app, ["-r", "ecr", "-r", "dockerhub", "--json"])
    assert result.exit_code == 0, result.output
    assert seen == {
        "registry": ["ecr", "dockerhub"],
        "json": True,
        "verbose": False,
        "quiet": False,
    }
    command = typer.main.get_command(app)
    assert [p.opts[0] for p in command.params] == ["--registry", "--json", "--verbose", "--quiet"]
