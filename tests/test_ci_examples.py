"""The README's GitHub Actions workflow and GitLab CI job, run command by command.

Every `shipit` line in them is executed with Typer's CliRunner against the fake engine (and
moto for ECR), with the CI system's variables set, and its outputs checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shipit.cli import app
from shipit.cli.wiring import Clients
from tests.ci_examples_support import FakeRegistryClient
from tests.conftest import REPO_ROOT
from tests.fakes import FakeAPI

README = (REPO_ROOT / "README.md").read_text()
SHA = "0123456789abcdef0123456789abcdef01234567"


def readme_yaml(after: str) -> dict[str, Any]:
    """The first ```yaml block that follows the line starting with `after`."""
    start = README.index(after)
    match = re.search(r"```yaml\n(.*?)```", README[start:], re.DOTALL)
    assert match, f"no yaml block after {after!r}"
    return yaml.safe_load(match.group(1))


def shipit_commands(lines: list[str], env: dict[str, str]) -> list[list[str]]:
    commands = []
    for line in lines:
        for part in line.splitlines():
            part = part.strip()
            if part.startswith("shipit "):
                expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), part)
                commands.append(shlex.split(expanded)[1:])
    return commands


@pytest.fixture
def registry_api(fake_api: FakeAPI, clients: Clients) -> None:
    FakeRegistryClient.api = fake_api
    clients.registry = FakeRegistryClient


def run_all(commands: list[list[str]], env: dict[str, str]) -> list[Any]:
    results = []
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, (command, result.output)
        results.append(result)
    return results


def test_github_actions_workflow_gets_outputs_summary_and_masks(
    fake_api: FakeAPI, registry_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws

    workflow = readme_yaml("GitHub Actions:")
    steps = workflow["jobs"]["release"]["steps"]
    region = next(s for s in steps if "configure-aws-credentials" in s.get("uses", ""))["with"][
        "aws-region"
    ]
    output, summary = tmp_path / "output", tmp_path / "summary"
    event = tmp_path / "event.json"  # what the runner writes for a push to main
    event.write_text('{"ref": "refs/heads/main", "repository": {"default_branch": "main"}}')
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": SHA,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    }
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.chdir(REPO_ROOT)
    commands = shipit_commands([s["run"] for s in steps if "run" in s], env)
    assert commands and commands[0][0] == "release"
    with mock_aws():
        (result,) = run_all(commands, env)
    host = f"123456789012.dkr.ecr.{region}.amazonaws.com"
    text = output.read_text()
    for key in ("image", "digest", "tags", "references"):
        assert re.search(rf"^{key}(=|<<)", text, re.MULTILINE), key
    assert "image=hello-flask" in text
    assert f"{host}/hello-flask:latest@sha256:" in text  # a push to the default branch
    assert f"{host}/hello-flask:main" in text  # the branch tag from GITHUB_REF_NAME
    assert "| ecr |" in summary.read_text()
    lines = result.stderr.splitlines()
    masks = [line for line in lines if line.startswith("::add-mask::")]
    assert "::add-mask::testing-secret-key" in masks
    assert "::add-mask::123456789012-auth-token" in masks
    assert lines[0].startswith("::add-mask::"), "masks come before anything else"
    unmasked = [line for line in lines if not line.startswith("::add-mask::")]
    assert not any("123456789012-auth-token" in line for line in unmasked)
    assert any(line.startswith("::group::") for line in lines)


def test_gitlab_job_tags_merge_requests_without_latest_and_pushes_to_docker_hub(
    fake_api: FakeAPI, registry_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = readme_yaml("GitLab CI (set")["release-image"]
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_COMMIT_SHA": SHA,
        "CI_MERGE_REQUEST_IID": "42",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/Login",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_TAG": "",
        "DOCKERHUB_USERNAME": "alice",
        "DOCKERHUB_TOKEN": "dckr_pat_not_a_real_token",
    }
    for key, value in job["variables"].items():
        env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), str(value))
    monkeypatch.chdir(REPO_ROOT)
    commands = shipit_commands(job["script"], env)
    assert [c[0] for c in commands] == ["build", "push"]
    results = run_all(commands, env)
    pushed = results[1].stdout
    assert "docker.io/alice/hello-flask:pr-42@sha256:" in pushed
    assert "docker.io/alice/hello-flask:latest" not in pushed  # a merge request never moves latest
    assert "dckr_pat_not_a_real_token" not in "".join(r.output for r in results)
    (_, _, kwargs) = next(c for c in fake_api.calls if c[0] == "push")
    assert kwargs["auth_config"]["username"] == "alice"


def test_gitlab_tag_pipeline_adds_version_tags(
    fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = readme_yaml("GitLab CI (set")["release-image"]
    env = {"CI": "true", "GITLAB_CI": "true", "CI_COMMIT_SHA": SHA, "CI_COMMIT_TAG": "1.2.3"}
    for key, value in job["variables"].items():
        env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), str(value))
    monkeypatch.chdir(REPO_ROOT)
    build = shipit_commands(job["script"], env)[0]
    (result,) = run_all([[*build, "--json"]], env)
    assert '"hello-flask:1.2.3", "hello-flask:1.2", "hello-flask:1"' in result.stdout
