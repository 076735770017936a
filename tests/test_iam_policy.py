"""`shipit iam-policy` is derived from the calls shipit makes, and proven against them.

Every AWS API call the ECR/STS clients make is recorded through botocore's `before-call`
event on each client the wiring makes (moto answers them). The policy `iam-policy` prints for
the same options must allow every recorded action; options that widen what a push does
(`--lifecycle-keep`, `--scan-gate`, `--kms-key`, `--cache-from`) add their actions only when
given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from shipit.cli import app
from shipit.cli.wiring import Clients
from tests.fakes import FakeAPI, FakeRegistries, add_built_image, isolate_aws

runner = CliRunner()
ACCOUNT = "123456789012"
REGION = "us-east-1"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ENGINE_PUSH_ACTIONS = {
    # What the engine's own push does with the token (not a boto3 call, so not recorded).
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
}
PULL_ACTIONS = {
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
}


class Recorder:
    """Every `service:Operation` the botocore clients created during a test called."""

    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, model: Any, **_: Any) -> None:
        service = model.service_model.signing_name or model.service_model.endpoint_prefix
        self.actions.add(f"{service}:{model.name}")


@pytest.fixture
def recorder(clients: Clients) -> Recorder:
    """Hooks `before-call` on every AWS client the wiring makes while the test runs."""
    recorder = Recorder()
    make_aws, make_iam = clients.aws, clients.iam

    def aws(region: str, profile: str | None) -> tuple[Any, Any]:
        made = make_aws(region, profile)
        for client in made:
            client.meta.events.register("before-call.*.*", recorder)
        return made

    def iam(profile: str | None) -> Any:
        client = make_iam(profile)
        client.meta.events.register("before-call.*.*", recorder)
        return client

    clients.aws, clients.iam = aws, iam
    return recorder


@pytest.fixture
def ecr(
    project: Path, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeRegistries]:
    isolate_aws(monkeypatch, tmp_path, REGION)
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        registries = FakeRegistries(fake_api, client)
        registries.install(monkeypatch)

        def scanned_on_push(repository: str, tag: str, image_id: str) -> str:
            # ECR scans on push; moto only after StartImageScan.
            digest = registries.pushed(repository, tag, image_id)
            name = repository.partition("/")[2]
            client.start_image_scan(repositoryName=name, imageId={"imageDigest": digest})
            return digest

        fake_api.on_push = scanned_on_push
        add_built_image(fake_api, project, version="1.2.3")
        yield registries


def policy(*args: str) -> dict[str, Any]:
    result = runner.invoke(
        app, ["iam-policy", "--repository", "demo", "--account", ACCOUNT, "--region", REGION, *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def allowed(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def test_plain_push_policy_has_no_optional_actions() -> None:
    actions = allowed(policy())
    assert actions >= ENGINE_PUSH_ACTIONS
    assert "ecr:PutLifecyclePolicy" not in actions
    assert "ecr:DescribeImageScanFindings" not in actions
    assert "ecr:GetDownloadUrlForLayer" not in actions
    assert not any(a.startswith("kms:") for a in actions)


@pytest.mark.parametrize(
    ("options", "added"),
    [
        (["--lifecycle-keep", "10"], {"ecr:PutLifecyclePolicy"}),
        (["--scan-gate", "HIGH"], {"ecr:DescribeImageScanFindings"}),
        (["--kms-key", KMS_KEY], {"kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"}),
        (["--cache-from", f"{ECR_HOST}/demo:latest"], {"ecr:GetDownloadUrlForLayer"}),
    ],
)
def test_each_option_adds_its_actions(options: list[str], added: set[str]) -> None:
    assert added <= allowed(policy(*options))
    assert not added & allowed(policy())


def test_kms_actions_are_scoped_to_the_key() -> None:
    document = policy("--kms-key", KMS_KEY)
    (kms,) = [s for s in document["Statement"] if any(a.startswith("kms:") for a in s["Action"])]
    assert kms["Resource"] == KMS_KEY


def test_cache_from_pull_is_scoped_to_the_cache_repository() -> None:
    document = policy("--cache-from", f"{ECR_HOST}/team/base:latest")
    pulls = [s for s in document["Statement"] if "ecr:GetDownloadUrlForLayer" in s["Action"]]
    assert [s["Resource"] for s in pulls] == [
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/base"
    ]
    assert set(pulls[0]["Action"]) >= PULL_ACTIONS


def test_iam_policy_json_wraps_the_document() -> None:
    result = runner.invoke(app, ["iam-policy", "--repository", "demo", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["policy"]["Version"] == "2012-10-17"
    assert data["repository"] == "demo"
    assert "ecr:PutImage" in data["actions"]


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--lifecycle-keep", "3", "--lifecycle-untagged-days", "7"],
        ["--scan-gate", "CRITICAL", "--scan-timeout", "5"],
        ["--kms-key", KMS_KEY],
    ],
    ids=["plain", "lifecycle", "scan-gate", "kms"],
)
def test_every_recorded_aws_call_is_in_the_policy(
    ecr: FakeRegistries, recorder: Recorder, options: list[str]
) -> None:
    result = runner.invoke(app, ["push", "-r", "ecr", "--version", "1.2.3", *options])
    assert result.exit_code == 0, result.output
    assert recorder.actions, "no AWS call was recorded"
    assert "ecr:CreateRepository" in recorder.actions
    iam_options = [o for o in options if o not in ("--scan-timeout", "5")]
    missing = recorder.actions - allowed(policy(*iam_options))
    assert not missing, f"iam-policy {' '.join(iam_options)} lacks {sorted(missing)}"
    if "--lifecycle-keep" in options:
        assert "ecr:PutLifecyclePolicy" in recorder.actions
    if "--scan-gate" in options:
        assert "ecr:DescribeImageScanFindings" in recorder.actions
