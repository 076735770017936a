"""CI detection and outputs, doctor, iam-policy, and the ECR hygiene options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipit.adapters import ci
from shipit.cli import app
from shipit.cli.wiring import Clients
from shipit.services.doctor import _policy_source_arn, check_aws, check_dockerhub, failed_required
from shipit.services.registries import scan_gate_failures
from tests.ci_examples_support import FakeRegistryClient
from tests.fakes import FakeAPI

runner = CliRunner()
SHA = "89abcdef0123456789abcdef0123456789abcdef"


def test_github_pull_request_tag() -> None:
    info = ci.detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REF": "refs/pull/42/merge",
            "GITHUB_SHA": SHA,
            "GITHUB_HEAD_REF": "feature/x",
        }
    )
    assert info is not None and info.tags() == ["pr-42"]
    assert info.sha == SHA


def test_github_branch_tag_is_sanitised() -> None:
    info = ci.detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_REF": "refs/heads/Feature/Login#2",
            "GITHUB_REF_NAME": "Feature/Login#2",
        }
    )
    assert info is not None and info.tags() == ["feature-login-2"]


def test_github_tag_ref_adds_no_branch_tag() -> None:
    info = ci.detect(
        {"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_REF_NAME": "v1.2.3"}
    )
    assert info is not None and info.tags() == []


def test_gitlab_merge_request_and_branch() -> None:
    mr = ci.detect({"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "7", "CI_COMMIT_SHA": SHA})
    assert mr is not None and mr.tags() == ["pr-7"]
    branch = ci.detect({"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "release/2.x"})
    assert branch is not None and branch.tags() == ["release-2.x"]


def test_codebuild_webhook_variables() -> None:
    pr = ci.detect(
        {
            "CODEBUILD_BUILD_ID": "b:1",
            "CODEBUILD_WEBHOOK_TRIGGER": "pr/12",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA,
        }
    )
    assert pr is not None and pr.tags() == ["pr-12"] and pr.sha == SHA
    branch = ci.detect(
        {
            "CODEBUILD_BUILD_ID": "b:1",
            "CODEBUILD_WEBHOOK_HEAD_REF": "refs/heads/main",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": "arn:aws:s3:::bucket/src.zip",
        }
    )
    assert branch is not None and branch.tags() == ["main"] and branch.sha is None


def test_no_ci() -> None:
    assert ci.detect({}) is None


def test_ci_commit_feeds_sha_tag_without_git(
    tmp_path: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    env = {
        "GITLAB_CI": "true",
        "CI_COMMIT_SHA": SHA,
        "CI_COMMIT_BRANCH": "main",
        "CI_DEFAULT_BRANCH": "main",
    }
    result = runner.invoke(app, ["build", "--json", "--name", "app"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tags"] == ["app:latest", f"app:sha-{SHA[:7]}", "app:main"]


def test_github_outputs_use_delimiters_for_lists(tmp_path: Path) -> None:
    out, summary = tmp_path / "o", tmp_path / "s"
    ci.write_github_outputs(
        {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)},
        image="app",
        digest="sha256:abc",
        tags=["app:1", "app:latest"],
        references=["r/app:1@sha256:abc"],
        rows=[("ecr", "r/app:1", "sha256:abc")],
    )
    text = out.read_text()
    assert "image=app\n" in text and "digest=sha256:abc\n" in text
    assert "tags<<shipit_" in text and "\napp:1\napp:latest\n" in text
    assert "| ecr | `r/app:1` | `sha256:abc` |" in summary.read_text()


def test_build_writes_github_outputs(
    tmp_path: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["build", "--name", "app"],
        env={"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(out), "GITHUB_REF": "refs/heads/x"},
    )
    assert result.exit_code == 0, result.output
    assert "image=app" in out.read_text()


# ---------------------------------------------------------------- doctor / iam-policy


class _Registry:
    region = "eu-west-1"

    def caller_arn(self) -> str:
        return "arn:aws:sts::123456789012:assumed-role/ci/session"

    def account_id(self) -> str:
        return "123456789012"


class _Iam:
    def __init__(self, denied: list[str]):
        self.denied = denied
        self.source = ""

    def simulate_principal_policy(self, PolicySourceArn: str, ActionNames: list[str]) -> Any:
        self.source = PolicySourceArn
        return {
            "EvaluationResults": [
                {
                    "EvalActionName": a,
                    "EvalDecision": "implicitDeny" if a in self.denied else "allowed",
                }
                for a in ActionNames
            ]
        }


def test_doctor_names_denied_ecr_actions() -> None:
    iam = _Iam(["ecr:PutImage"])
    checks = check_aws(_Registry, required=True, make_iam=lambda: iam)
    perm = checks[-1]
    assert perm.ok is False and "ecr:PutImage" in perm.detail
    assert iam.source == "arn:aws:iam::123456789012:role/ci"
    assert failed_required(checks) == [perm]


def test_doctor_permission_simulation_unavailable_is_could_not_check() -> None:
    def broken() -> Any:
        raise RuntimeError("AccessDenied")

    checks = check_aws(_Registry, required=True, make_iam=broken)
    assert checks[-1].ok is None and "could not check" in checks[-1].detail
    assert failed_required(checks) == []


def test_doctor_identity_with_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    from shipit.services.registries import RegistryOptions, make_ecr_registry

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    env = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        checks = check_aws(lambda: make_ecr_registry(RegistryOptions(), env), required=True)
    assert [c.ok for c in checks] == [True, True]
    assert "123456789012" in checks[1].detail


def test_doctor_fails_without_engine_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(
        app, ["doctor", "--json"], env={"DOCKER_HOST": "tcp://127.0.0.1:9", "AWS_REGION": ""}
    )
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["checks"][0]["name"] == "engine"


def test_doctor_dockerhub_check() -> None:
    assert check_dockerhub({"DOCKERHUB_USERNAME": "a", "DOCKERHUB_TOKEN": "t"}, required=True).ok
    assert check_dockerhub({"DOCKER_CONFIG": "/nonexistent"}, required=True).ok is False


def test_policy_source_for_users_is_unchanged() -> None:
    assert _policy_source_arn("arn:aws:iam::1:user/bob") == "arn:aws:iam::1:user/bob"


def test_iam_policy_prints_least_privilege_json() -> None:
    result = runner.invoke(
        app,
        ["iam-policy", "--repository", "web", "--region", "eu-west-1", "--account", "123456789012"],
    )
    assert result.exit_code == 0, result.output
    policy = json.loads(result.stdout)
    resources = {json.dumps(s["Resource"]) for s in policy["Statement"]}
    assert any("arn:aws:ecr:eu-west-1:123456789012:repository/web" in r for r in resources)
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"ecr:GetAuthorizationToken", "ecr:PutImage", "ecr:UploadLayerPart"} <= actions


# ---------------------------------------------------------------- ECR hygiene


def test_scan_gate_threshold() -> None:
    assert scan_gate_failures({"CRITICAL": 1, "LOW": 4}, "high") == {"CRITICAL": 1}
    assert scan_gate_failures({"MEDIUM": 2}, "HIGH") == {}


def test_hygiene_options_need_ecr(project: Path, fake_api: FakeAPI) -> None:
    result = runner.invoke(app, ["push", "--registry", "localhost:5000", "--lifecycle-keep", "5"])
    assert result.exit_code == 2 and "need --registry ecr" in result.stderr
    result = runner.invoke(app, ["push", "--registry", "ecr", "--scan-gate", "SEVERE"])
    assert result.exit_code == 2 and "--scan-gate" in result.stderr


@pytest.fixture
def ecr_push(
    project: Path, fake_api: FakeAPI, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> Any:
    from moto import mock_aws

    FakeRegistryClient.api = fake_api
    clients.registry = FakeRegistryClient
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for k, v in {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }.items():
        monkeypatch.setenv(k, v)
    assert runner.invoke(app, ["build"]).exit_code == 0
    with mock_aws():
        yield


def test_lifecycle_policy_is_set_after_push(ecr_push: Any) -> None:
    import boto3

    result = runner.invoke(
        app,
        ["push", "--registry", "ecr", "--lifecycle-keep", "10", "--lifecycle-untagged-days", "7"],
    )
    assert result.exit_code == 0, result.output
    policy = json.loads(
        boto3.client("ecr", region_name="us-east-1").get_lifecycle_policy(repositoryName="demo")[
            "lifecyclePolicyText"
        ]
    )
    counts = sorted(r["selection"]["countNumber"] for r in policy["rules"])
    assert counts == [7, 10]


class CannedScanEcr:
    """moto's ECR client with a finished image scan that found HIGH=2, LOW=1 (moto scans nothing)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_image_scan_findings(self, **_: Any) -> dict[str, Any]:
        return {
            "imageScanStatus": {"status": "COMPLETE"},
            "imageScanFindings": {"findingSeverityCounts": {"HIGH": 2, "LOW": 1}},
        }


def test_scan_gate_fails_push_above_threshold(ecr_push: Any, clients: Clients) -> None:
    from shipit.adapters.ecr import make_clients

    def scanning_clients(region: str, profile: str | None) -> tuple[Any, Any]:
        ecr, sts = make_clients(region, profile)
        return CannedScanEcr(ecr), sts

    clients.aws = scanning_clients
    result = runner.invoke(app, ["push", "--registry", "ecr", "--scan-gate", "HIGH"])
    assert result.exit_code == 6
    assert "scan gate failed" in result.stderr and "HIGH=2" in result.stderr
    result = runner.invoke(app, ["push", "--registry", "ecr", "--scan-gate", "CRITICAL"])
    assert result.exit_code == 0, result.output
    assert "scan gate passed" in result.stderr
