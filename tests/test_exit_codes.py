"""One rule for exit codes: the README's table, `ExitCode` and real failing commands agree.

The rule (README, "Exit codes"): the code names what has to be fixed. Input that is invalid
before anything is built or pushed (options, names, config, a Dockerfile the parser rejects)
is 2; missing or refused credentials 3; the engine 4; a build step that ran and failed 5; the
registry 6; the smoke test 7.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipit import errors
from shipit.cli import app
from shipit.errors import ExitCode
from tests.conftest import REPO_ROOT, run_shipit
from tests.fakes import FakeAPI, FakeRegistries, add_built_image

runner = CliRunner()


def readme_exit_codes() -> dict[int, str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Exit codes") :]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, re.MULTILINE)
    assert rows, "no exit code table in the README"
    return {int(code): meaning for code, meaning in rows}


def exit_code_members() -> dict[str, int]:
    return {
        name: int(value)
        for name, value in vars(ExitCode).items()
        if name.isupper() and isinstance(value, int)
    }


def test_readme_table_lists_exactly_the_exit_codes() -> None:
    assert sorted(readme_exit_codes()) == sorted(exit_code_members().values())


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (errors.UsageError, "invalid input"),
        (errors.ConfigError, "invalid input"),
        (errors.ImageNotFoundError, "invalid input"),
        (errors.AuthError, "credentials"),
        (errors.EngineUnavailableError, "engine"),
        (errors.BuildError, "build"),
        (errors.RegistryError, "registry"),
        (errors.Interrupted, "interrupted"),
    ],
)
def test_every_error_class_exits_with_the_code_the_readme_gives(
    error: type[errors.ShipitError], words: str
) -> None:
    table = readme_exit_codes()
    assert words in table[error.exit_code].lower(), (error.__name__, table[error.exit_code])


def test_readme_rule_for_the_dockerfile_is_stated() -> None:
    table = readme_exit_codes()
    assert "dockerfile syntax" in table[ExitCode.USAGE].lower()
    assert "dockerfile syntax" not in table[ExitCode.BUILD].lower()


def test_dockerfile_syntax_error_exits_2(project: Path, fake_api: FakeAPI) -> None:
    # What the engine answers for a Dockerfile its parser rejects (a 400 before any step).
    message = "dockerfile parse error line 1: unknown instruction: FORM"
    fake_api.build_chunks = [{"error": message, "errorDetail": {"message": message}}]
    result = runner.invoke(app, ["build"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Dockerfile syntax error" in result.stderr


def test_failing_step_exits_5(project: Path, fake_api: FakeAPI) -> None:
    message = "The command '/bin/sh -c false' returned a non-zero code: 1"
    fake_api.build_chunks = [
        {"stream": "Step 1/1 : RUN false\n"},
        {"error": message, "errorDetail": {"message": message}},
    ]
    result = runner.invoke(app, ["build"])
    assert result.exit_code == ExitCode.BUILD, result.output


def test_dockerhub_without_username_exits_3_naming_the_variables(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    add_built_image(fake_api, project)
    result = runner.invoke(app, ["push", "--registry", "dockerhub"])
    assert result.exit_code == ExitCode.AUTH, result.output
    assert "DOCKERHUB_USERNAME" in result.stderr and "DOCKERHUB_TOKEN" in result.stderr


def test_dockerhub_token_without_username_exits_3(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeRegistries(fake_api).install(monkeypatch)
    add_built_image(fake_api, project)
    monkeypatch.setenv("DOCKERHUB_TOKEN", "dckr_pat_x")
    result = runner.invoke(app, ["push", "--registry", "dockerhub"])
    assert result.exit_code == ExitCode.AUTH, result.output
    assert "DOCKERHUB_USERNAME" in result.stderr


@pytest.mark.integration
def test_real_engine_dockerfile_syntax_error_exits_2(docker_api: object, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FORM scratch\n")
    name = f"shipit-exitcode-{uuid.uuid4().hex[:8]}"
    result = run_shipit("build", str(context), "--name", name, "--no-latest", "-t", "x")
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert "Dockerfile syntax error" in result.stderr
