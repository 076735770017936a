"""Messages that must not mislead (issue: push without credentials, --password-stdin with
SHIPIT_REGISTRY_USERNAME, doctor's marks and generic registries, login's help, config keys,
smoke's result, prune --keep 0 and the build cache, a mistyped command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.cli import app
from tests.conftest import run_shipit
from tests.fakes import FakeAPI, FakeRegistries, add_built_image

runner = CliRunner()
REG = "localhost:5000"


@pytest.fixture
def registries(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeRegistries:
    return FakeRegistries(fake_api).install(monkeypatch)


def test_push_without_credentials_says_how_to_provide_them(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    _, references = add_built_image(fake_api, project)
    message = "unauthorized: authentication required"
    fake_api.push_errors[f"{REG}/demo:{references[0].split(':', 1)[1]}"] = [
        {"error": message, "errorDetail": {"message": message}}
    ]
    result = runner.invoke(app, ["push", "-r", REG])
    assert result.exit_code == 3, result.output
    assert "refused the credentials" not in result.stderr
    assert "requires credentials and none were sent" in result.stderr
    assert "SHIPIT_REGISTRY_USERNAME" in result.stderr
    assert "--password-stdin" in result.stderr


def test_password_stdin_takes_the_username_from_the_environment(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    result = runner.invoke(
        app,
        ["login", "-r", REG, "--password-stdin"],
        input="s3cret-pw\n",
        env={"SHIPIT_REGISTRY_USERNAME": "ci-user"},
    )
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "login")
    assert kwargs["username"] == "ci-user"
    assert fake_api.login_passwords == ["s3cret-pw"]
    assert "s3cret-pw" not in result.output


def test_password_stdin_takes_the_docker_hub_username_from_the_environment(
    project: Path, fake_api: FakeAPI, registries: FakeRegistries
) -> None:
    result = runner.invoke(
        app,
        ["login", "-r", "dockerhub", "--password-stdin"],
        input="dckr_pat_x\n",
        env={"DOCKERHUB_USERNAME": "alice"},
    )
    assert result.exit_code == 0, result.output
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "login")
    assert kwargs["username"] == "alice"


def _doctor(args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from tests.fakes import isolate_aws

    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers: no identity
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    return runner.invoke(app, ["doctor", *args])


def test_doctor_marks_optional_checks_apart_from_failures(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _doctor([], monkeypatch, tmp_path)
    lines = result.stdout.splitlines()
    hub = next(line for line in lines if "docker hub credentials" in line)
    assert not hub.startswith("FAIL"), hub  # optional: nobody asked for Docker Hub
    assert result.exit_code == 0, result.output
    required = _doctor(["--registry", "dockerhub"], monkeypatch, tmp_path)
    hub = next(line for line in required.stdout.splitlines() if "docker hub credentials" in line)
    assert hub.startswith("FAIL")
    assert required.exit_code == 3


def test_doctor_checks_a_generic_registry(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _doctor(["--registry", REG, "--json"], monkeypatch, tmp_path)
    checks = json.loads(result.stdout)["checks"]
    mine = [c for c in checks if REG in c["name"]]
    assert mine, checks
    assert all(c["required"] for c in mine)


def test_login_help_does_not_talk_about_pushing() -> None:
    result = runner.invoke(app, ["login", "--help"])
    assert result.exit_code == 0
    assert "pushed" not in result.stdout


def test_config_errors_list_keys_as_the_readme_spells_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shipit.toml").write_text('name = "x"\ncache_fromm = ["a"]\n')
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 2, result.output
    known = result.stderr.split("(known:", 1)[1]
    assert "cache-from" in known and "build-args" in known
    assert "cache_from" not in known and "build_args" not in known
    (tmp_path / "shipit.toml").write_text('name = "x"\n[registry]\nkms = "k"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 2, result.output
    known = result.stderr.split("(known:", 1)[1]
    assert "registry-id" in known and "kms-key" in known
    assert "registry_id" not in known


def test_smoke_prints_its_result_once_without_a_dead_url(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipit.services import smoke as smoke_service

    fake_api.add_image("demo:latest")
    fake_api.health_script = ["healthy"]
    monkeypatch.setattr(smoke_service, "probe_http", lambda url, timeout: 200)
    result = runner.invoke(app, ["smoke"])
    assert result.exit_code == 0, result.output
    output = result.stdout + result.stderr
    assert output.count("healthy after") + output.count("healthy demo:latest") == 1, output
    final = [line for line in output.splitlines() if "healthy" in line and "demo:latest" in line]
    assert not any("http://" in line for line in final), final


def test_prune_keep_0_removes_the_build_cache(project: Path, fake_api: FakeAPI) -> None:
    labels = {"io.shipit.image": "demo"}
    fake_api.images.clear()
    fake_api.add_runtime_image(
        "sha256:" + "1" * 64, ["demo:latest"], labels=labels, created="2024-05-01T10:00:00Z"
    )
    fake_api.add_runtime_image(
        "sha256:" + "2" * 64, ["demo:buildcache"], labels=labels, created="2024-05-01T09:00:00Z"
    )
    result = runner.invoke(app, ["prune", "--keep", "0", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    removed = json.loads(result.stdout)["removed"]
    assert any("demo:buildcache" in item for item in removed), removed
    kept = runner.invoke(app, ["prune", "--keep", "1", "--json"])
    assert "demo:buildcache" not in json.dumps(json.loads(kept.stdout)["plan"])


def test_mistyped_command_gets_a_suggestion() -> None:
    # The real entry point (commands built lazily), not CliRunner's eagerly built group.
    result = run_shipit("biuld")
    assert result.returncode == 2, result.stderr
    assert "Did you mean 'build'?" in result.stderr
