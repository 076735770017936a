"""`--json` prints exactly one JSON object on stdout, on success and on failure.

A failure is `{"error": {"message", "hint", "exit_code", "kind"}}`, plus whatever did complete:
a push that landed on one registry and failed on another lists both (`pushed` with digests,
`failed` with reasons), so CI can learn what was pushed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.fakes import FakeAPI, FakeRegistries, add_built_image

runner = CliRunner()
REG = "localhost:5000"
OTHER = "registry.example.com:5443"


@pytest.fixture
def registries(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeRegistries:
    return FakeRegistries(fake_api).install(monkeypatch)


def one_object(stdout: str) -> dict[str, Any]:
    """stdout holds exactly one JSON document and nothing else."""
    text = stdout.strip()
    assert text, "nothing on stdout"
    data, end = json.JSONDecoder().raw_decode(text)
    assert end == len(text), f"more than one object on stdout: {stdout!r}"
    assert isinstance(data, dict)
    return data


def assert_error(data: dict[str, Any], exit_code: int, kind: str | None = None) -> None:
    error = data["error"]
    assert set(error) >= {"message", "hint", "exit_code", "kind"}, error
    assert error["exit_code"] == exit_code
    assert isinstance(error["message"], str) and error["message"]
    assert error["hint"] is None or isinstance(error["hint"], str)
    assert isinstance(error["kind"], str) and error["kind"]
    if kind is not None:
        assert error["kind"] == kind


def test_build_usage_error_is_one_json_object(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["build", "--json", "--tag", "Bad Tag!"])
    assert result.exit_code == 2, result.output
    data = one_object(result.stdout)
    assert_error(data, 2, "usage")
    assert "Bad Tag!" in data["error"]["message"]


def test_build_failure_is_one_json_object(project: Path, fake_api: FakeAPI) -> None:
    fake_api.build_chunks = [
        {"stream": "Step 1/1 : RUN false\n"},
        {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"},
    ]
    result = runner.invoke(app, ["build", "--json"])
    assert result.exit_code == 5, result.output
    data = one_object(result.stdout)
    assert_error(data, 5, "build")
    assert data["error"]["hint"]


def test_push_of_an_unbuilt_image_is_one_json_object(
    project: Path, registries: FakeRegistries
) -> None:
    result = runner.invoke(app, ["push", "-r", REG, "--json"])
    assert result.exit_code == 2, result.output
    assert_error(one_object(result.stdout), 2)


def test_push_missing_credentials_is_one_json_object(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    add_built_image(fake_api, project)
    result = runner.invoke(app, ["push", "-r", "dockerhub", "--json"])
    assert result.exit_code == 3, result.output
    assert_error(one_object(result.stdout), 3, "auth")


def test_partial_push_lists_what_landed_and_what_failed(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    _, references = add_built_image(fake_api, project)
    first_tag = references[0].split(":", 1)[1]
    message = "manifest invalid: manifest invalid"
    fake_api.push_errors[f"{REG}/demo:{first_tag}"] = [
        {"error": message, "errorDetail": {"message": message}}
    ]
    result = runner.invoke(app, ["push", "-r", REG, "-r", OTHER, "--json"])
    assert result.exit_code == 6, result.output
    data = one_object(result.stdout)
    assert_error(data, 6, "invalid")
    landed = data["pushed"]
    assert {p["reference"] for p in landed} == {
        f"{OTHER}/demo:{ref.split(':', 1)[1]}" for ref in references
    }
    digest = registries.served_digest(f"{OTHER}/demo:{first_tag}")
    assert all(p["digest"] == digest and p["registry"] == OTHER for p in landed)
    (failed,) = data["failed"]
    assert failed["registry"] == REG
    assert "manifest invalid" in failed["message"]
    assert failed["exit_code"] == 6


def test_iam_policy_without_a_name_is_one_json_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["iam-policy", "--json"])
    assert result.exit_code == 2, result.output
    assert_error(one_object(result.stdout), 2)


def test_smoke_of_a_missing_image_is_one_json_object(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["smoke", "--json"])
    assert result.exit_code == 2, result.output
    assert_error(one_object(result.stdout), 2)


def test_option_parse_errors_still_answer_one_json_object(project: Path) -> None:
    # A bad option value is caught by click before the command runs: still one object.
    result = runner.invoke(app, ["push", "-r", REG, "--json", "--retries", "0"])
    assert result.exit_code == 2
    assert_error(one_object(result.stdout), 2, "usage")
